"""gunicorn settings for the portal: ``gunicorn --config config/gunicorn.conf.py app:app``."""

import multiprocessing
import os

bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("PORTAL_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 8)))
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
