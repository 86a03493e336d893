"""gunicorn settings for the portal: ``gunicorn --config config/gunicorn.conf.py app:app``."""

import multiprocessing
import os

bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
# Threaded workers: a request waiting on Dovecot (which answers a failed password
# only after 2 to 17 s) holds a thread, not a process, so a few failing clients
# cannot freeze the portal. A process per CPU uses every core despite the GIL;
# LOGIN_WORKER_MAX_IN_FLIGHT (48) keeps some of each worker's threads for pages.
worker_class = "gthread"
workers = int(os.environ.get("PORTAL_WORKERS", min(max(multiprocessing.cpu_count(), 2), 8)))
threads = int(os.environ.get("PORTAL_THREADS", 64))
# Longer than the slowest sign-in can take (IMAP connect, STARTTLS and ID at
# IMAP_TIMEOUT 5 s each, plus IMAP_AUTH_TIMEOUT 20 s = 35 s), shorter than a
# reverse proxy's usual 60 s, so the portal answers before the proxy gives up.
timeout = 50
graceful_timeout = 10
# The database pool is opened lazily in each worker after the fork (portal/db.py),
# so preloading would be safe; it stays off so a code reload restarts cleanly.
preload_app = False
# The portal logs one JSON line per request itself, with the real client address
# (behind a proxy, from X-Forwarded-For as trusted_proxy_count allows) and the
# request id; gunicorn's own access log would only see the proxy's address.
accesslog = os.environ.get("PORTAL_GUNICORN_ACCESSLOG") or None
errorlog = "-"


def worker_exit(server, worker):
    """Close the exiting worker's database pool, whose threads would otherwise hold up its exit (Python 3.13)."""
    from portal.db import close_pool

    app = getattr(worker, "wsgi", None)
    if app is not None and "portal_db" in getattr(app, "extensions", {}):
        close_pool(app)
