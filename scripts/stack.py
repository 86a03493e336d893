"""Private PostgreSQL, Dovecot and Postfix instances on loopback, for development and tests.

Run as root on Debian 12 or 13 through ``scripts/stack`` (which installs the packages
first). Nothing here touches the machine's own /etc/postfix or /etc/dovecot
setup or ports 25/143/5432:

- one PostgreSQL cluster of our own (``pg_createcluster``, port 15432), shared by
  every instance, each instance with its own database;
- per instance, a Dovecot (``dovecot -c``) with IMAP and LMTP on loopback ports and
  maildirs under the instance's folder, and a Postfix (``postfix -c``) with SMTP on a
  loopback port, pgsql maps and delivery to that Dovecot over LMTP.

The Postfix and Dovecot files come from the templates under ``config/`` that an
operator installs in production (``portal.mailconfig``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal import mailconfig  # noqa: E402
from portal import migrate  # noqa: E402

STACK_ROOT = Path(os.environ.get("PORTAL_STACK_DIR", "/var/lib/mail-portal-stack"))
PG_CLUSTER = "mailportal"
PG_PORT = 15432
PG_HOST = "127.0.0.1"
DB_OWNER = "portal"
# Postfix and Dovecot read the mail tables with a role that can do nothing else.
DB_MAIL_READER = "mailuser"
# The daily purge of deleted mailboxes' mail runs as vmail (it owns the maildirs)
# and connects with a role that may only read and close the removal queue.
DB_PURGER = "mailpurge"
VMAIL = "vmail"
VMAIL_ID = 5000  # the guide's uid/gid


@dataclass(frozen=True)
class Instance:
    """One Dovecot + Postfix pair and the database they read."""

    name: str
    db_name: str
    imap_port: int
    lmtp_port: int
    smtp_port: int
    imaps_port: int = 0
    # Dovecot's doveadm HTTP API, through which the portal ends open mail sessions (0: none).
    doveadm_port: int = 0
    # Postfix's submission service (as 587 on a server): STARTTLS, SASL through Dovecot, send-as checks.
    submission_port: int = 0
    # ManageSieve, for the tests of scripts other clients write (0: none).
    managesieve_port: int = 0
    # The portal's own IMAP listener, where it checks sign-in passwords (0: the portal uses imap_port).
    portal_imap_port: int = 0

    @property
    def sasl_socket(self) -> Path:
        """Dovecot's auth socket for Postfix's submission service (outside base_dir, as Dovecot asks)."""
        return self.dir / "dovecot" / "auth-postfix"

    @property
    def doveadm_url(self) -> str:
        return f"http://127.0.0.1:{self.doveadm_port}/doveadm/v1" if self.doveadm_port else ""

    @property
    def tls_cert(self) -> Path:
        return self.dir / "dovecot" / "tls-cert.pem"

    @property
    def tls_key(self) -> Path:
        return self.dir / "dovecot" / "tls-key.pem"

    @property
    def dir(self) -> Path:
        return STACK_ROOT / self.name

    @property
    def mail_root(self) -> Path:
        return self.dir / "mail" / "vhosts"

    @property
    def dovecot_conf(self) -> Path:
        return self.dir / "dovecot" / "dovecot.conf"

    @property
    def postfix_dir(self) -> Path:
        return self.dir / "postfix" / "etc"

    @property
    def portal_config(self) -> Path:
        return self.dir / "portal.toml"

    @property
    def purge_config(self) -> Path:
        return self.dir / "purge.toml"


INSTANCES = {
    "dev": Instance("dev", "mailportal", imap_port=10143, lmtp_port=10024, smtp_port=10025, imaps_port=10993,
                    doveadm_port=10808, submission_port=10587, managesieve_port=10419, portal_imap_port=10144),
    "test": Instance("test", "mailportal_test", imap_port=11143, lmtp_port=11024, smtp_port=11025, imaps_port=11993,
                     doveadm_port=11808, submission_port=11587, managesieve_port=11419, portal_imap_port=11144),
}


def log(message: str) -> None:
    print(f"stack: {message}", flush=True)


def run(*args: str, input_text: str | None = None, check: bool = True, quiet: bool = False):
    """Run a command from an argument list (never a shell string)."""
    result = subprocess.run(  # noqa: S603 - fixed programs, argument lists
        list(args), input=input_text, text=True, capture_output=True, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"command failed ({result.returncode}): {' '.join(args)}\n{result.stdout}{result.stderr}".rstrip()
        )
    if not quiet and result.returncode != 0:
        log(f"{' '.join(args)}: {result.stderr.strip()}")
    return result


def run_daemon(*args: str) -> None:
    """Start a program that daemonizes; its children must not inherit our pipes."""
    STACK_ROOT.mkdir(parents=True, exist_ok=True)
    with open(STACK_ROOT / "daemon-start.log", "w+") as errors:
        result = subprocess.run(  # noqa: S603 - fixed programs, argument lists
            list(args), stdin=subprocess.DEVNULL, stdout=errors, stderr=subprocess.STDOUT, check=False
        )
        if result.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"command failed ({result.returncode}): {' '.join(args)}\n{errors.read()}".rstrip())


def wait_for_port(port: int, seconds: float = 15.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on the port."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing is listening on {host}:{port} after {seconds:.0f} s") from None
            time.sleep(0.1)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- secrets ---------------------------------------------------------------------------


def stack_secrets() -> dict:
    """Return the stack's generated passwords and keys, creating them once."""
    path = STACK_ROOT / "secrets.json"
    STACK_ROOT.mkdir(parents=True, exist_ok=True)
    STACK_ROOT.chmod(0o755)
    values = json.loads(path.read_text()) if path.exists() else {}
    wanted = {
        "owner_password": lambda: secrets.token_hex(16),
        "reader_password": lambda: secrets.token_hex(16),
        "secret_key": lambda: secrets.token_hex(32),
        "doveadm_api_key": lambda: secrets.token_hex(24),  # added later: made on first use by an older stack too
        "purger_password": lambda: secrets.token_hex(16),
        "purge_secret_key": lambda: secrets.token_hex(32),  # not the portal's: vmail must not sign sessions
    }
    missing = {name: make() for name, make in wanted.items() if name not in values}
    if missing:
        values |= missing
        path.touch(mode=0o600)
        path.write_text(json.dumps(values))
    return values


def database_url(db_name: str, user: str = DB_OWNER, password: str | None = None) -> str:
    """Return the libpq URL of a stack database."""
    if password is None:
        key = {DB_OWNER: "owner_password", DB_PURGER: "purger_password"}.get(user, "reader_password")
        password = stack_secrets()[key]
    return f"postgresql://{user}:{password}@{PG_HOST}:{PG_PORT}/{db_name}"


# --- PostgreSQL ----------------------------------------------------------------------------


@functools.cache
def pg_version() -> str:
    """The PostgreSQL major version installed here: 15 on Debian 12, 17 on Debian 13 (the newest if several)."""
    versions = [int(p.parent.parent.name) for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
                if p.parent.parent.name.isdigit()]
    if not versions:
        raise SystemExit("stack: no PostgreSQL server is installed; run scripts/bootstrap")
    return str(max(versions))


@functools.cache
def dovecot_series() -> str:
    """The configuration series of the Dovecot installed here: 2.3 on Debian 12, 2.4 on Debian 13."""
    series = mailconfig.dovecot_series()
    if series is None:
        raise SystemExit("stack: no Dovecot 2.3 or 2.4 is installed; run scripts/bootstrap")
    return series


def cluster_status() -> str | None:
    """Return 'online', 'down' or None when the cluster does not exist."""
    result = run("pg_lsclusters", "--no-header", check=False, quiet=True)
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == pg_version() and fields[1] == PG_CLUSTER:
            return fields[3]
    return None


def ensure_cluster() -> None:
    """Create (once) and start the stack's own PostgreSQL cluster."""
    status = cluster_status()
    if status is None:
        log(f"creating PostgreSQL cluster {pg_version()}/{PG_CLUSTER} on port {PG_PORT}")
        run(
            "pg_createcluster", pg_version(), PG_CLUSTER, "--port", str(PG_PORT),
            # listen_addresses stays Debian's default, 'localhost': loopback only.
            # A development and test cluster: durability is not worth the fsyncs.
            "-o", "fsync=off", "-o", "synchronous_commit=off", "-o", "full_page_writes=off",
            "-o", "max_connections=200",
        )
        status = "down"
    if status != "online":
        log("starting PostgreSQL")
        run_daemon("pg_ctlcluster", pg_version(), PG_CLUSTER, "start")
    wait_for_port(PG_PORT, 30)
    deadline = time.monotonic() + 30
    while run("pg_isready", "-q", "-h", PG_HOST, "-p", str(PG_PORT), check=False, quiet=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL does not accept connections")
        time.sleep(0.2)


def stop_cluster() -> None:
    """Stop the stack's PostgreSQL cluster."""
    if cluster_status() == "online":
        run("pg_ctlcluster", pg_version(), PG_CLUSTER, "stop", "-m", "fast")


def start_cluster() -> None:
    """Start the stack's PostgreSQL cluster again after stop_cluster().

    Postfix and Dovecot processes that saw the database go away wait up to a
    minute before they try it again; renew them so the stack works at once.
    """
    ensure_cluster()
    for instance in INSTANCES.values():
        renew_database_clients(instance)


def renew_database_clients(instance: Instance) -> None:
    """Reload the instance's Postfix and Dovecot so they open fresh database connections."""
    if instance.postfix_dir.exists() and postfix_running(instance):
        run_daemon("postfix", "-c", str(instance.postfix_dir), "reload")
    if dovecot_pid(instance):
        run("doveadm", "-c", str(instance.dovecot_conf), "reload")


def psql_as_superuser(sql: str, database: str = "postgres") -> str:
    """Run SQL as the postgres superuser over the local socket; SQL goes in on stdin."""
    result = run(
        "runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
        "-p", str(PG_PORT), "-d", database, "-f", "-",
        input_text=sql,
    )
    return result.stdout.strip()


_ENSURE_ROLE = """
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')\\gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'password')\\gexec
"""

_ENSURE_DATABASE = """
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\\gexec
"""

_DROP_DATABASE = """
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db')\\gexec
"""


def _psql_vars(**values: str) -> str:
    """psql \\set lines; values are our own names and hex tokens, quoted by psql's :'name' later."""
    return "".join(f"\\set {name} '{value}'\n" for name, value in values.items())


def ensure_roles() -> None:
    """Create the owner and mail-reader roles with the stack's passwords."""
    values = stack_secrets()
    script = ""
    for role, key in ((DB_OWNER, "owner_password"), (DB_MAIL_READER, "reader_password"),
                      (DB_PURGER, "purger_password")):
        script += _psql_vars(role=role, password=values[key]) + _ENSURE_ROLE
    psql_as_superuser(script)


def ensure_database(db_name: str, fresh: bool = False) -> None:
    """Create the database owned by the portal role (dropping it first when fresh)."""
    script = _psql_vars(db=db_name, owner=DB_OWNER)
    if fresh:
        script += _DROP_DATABASE
    psql_as_superuser(script + _ENSURE_DATABASE)
    # Substring search uses trigram indexes (pg_trgm, and btree_gin to hold the domain
    # in them); trusted extensions, but the stack makes sure they exist even where the
    # migration runs as a role without CREATE rights.
    psql_as_superuser("CREATE EXTENSION IF NOT EXISTS pg_trgm;\nCREATE EXTENSION IF NOT EXISTS btree_gin;\n",
                      database=db_name)


def drop_database(db_name: str) -> None:
    """Drop a stack database."""
    psql_as_superuser(_psql_vars(db=db_name) + _DROP_DATABASE)


def migrate_database(db_name: str) -> None:
    """Apply the portal's migrations and let the mail reader read the mail tables."""
    import psycopg

    with psycopg.connect(database_url(db_name), autocommit=True) as conn:
        applied = migrate.upgrade(conn, report=lambda message: log(f"{db_name}: {message}"))
        if applied:
            log(f"{db_name}: at version {applied[-1].version}")
        grant_mail_reader(conn)
        grant_purger(conn)


def grant_mail_reader(conn) -> None:
    """Grant the Postfix/Dovecot role what it needs: read the mail tables, write quota usage."""
    from psycopg import sql
    from psycopg.rows import tuple_row

    reader = sql.Identifier(DB_MAIL_READER)
    conn.execute(sql.SQL("GRANT SELECT ON virtual_domains, virtual_users, virtual_aliases TO {}").format(reader))
    cursor = conn.cursor(row_factory=tuple_row)
    if cursor.execute("SELECT to_regclass('portal_quota_usage') IS NOT NULL").fetchone()[0]:
        conn.execute(sql.SQL("GRANT SELECT ON portal_mailbox_quota TO {}").format(reader))
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON portal_quota_usage TO {}").format(reader))
    if cursor.execute("SELECT to_regclass('portal_alias_domains') IS NOT NULL").fetchone()[0]:
        conn.execute(sql.SQL("GRANT SELECT ON portal_alias_domains TO {}").format(reader))
    if cursor.execute("SELECT to_regclass('portal_send_as') IS NOT NULL").fetchone()[0]:
        conn.execute(sql.SQL("GRANT SELECT ON portal_send_as TO {}").format(reader))
    if cursor.execute("SELECT to_regclass('portal_app_passwords') IS NOT NULL").fetchone()[0]:
        conn.execute(sql.SQL("GRANT SELECT ON portal_app_passwords TO {}").format(reader))
        conn.execute(sql.SQL("GRANT SELECT (mailbox_id, mail_clients_use_app_passwords) ON portal_mailbox_settings"
                             " TO {}").format(reader))


def grant_purger(conn) -> None:
    """Grant the purge's role what README "Production" step 3 grants: the removal queue and nothing of the mail."""
    from psycopg import sql

    conn.execute(sql.SQL(PURGER_GRANTS).format(purger=sql.Identifier(DB_PURGER)))


# The same statements as README "Production", step 3 (tests/test_operations.py compares them).
PURGER_GRANTS = """
GRANT SELECT ON portal_schema_migrations TO {purger};
GRANT SELECT, UPDATE ON portal_mailbox_removals TO {purger};
GRANT SELECT, DELETE ON portal_quota_usage TO {purger};
GRANT INSERT ON portal_audit_log TO {purger};
GRANT USAGE ON SEQUENCE portal_audit_log_id_seq TO {purger};
"""


# --- vmail ------------------------------------------------------------------------------


def ensure_vmail() -> None:
    """Create the vmail user and group of the guide (uid/gid 5000 where free)."""
    if run("getent", "group", VMAIL, check=False, quiet=True).returncode != 0:
        taken = run("getent", "group", str(VMAIL_ID), check=False, quiet=True).returncode == 0
        run("groupadd", *([] if taken else ["-g", str(VMAIL_ID)]), VMAIL)
    if run("getent", "passwd", VMAIL, check=False, quiet=True).returncode != 0:
        taken = run("getent", "passwd", str(VMAIL_ID), check=False, quiet=True).returncode == 0
        run("useradd", "-g", VMAIL, *([] if taken else ["-u", str(VMAIL_ID)]),
            "-d", "/var/mail", "-M", "-s", "/usr/sbin/nologin", VMAIL)


# --- Dovecot and Postfix ---------------------------------------------------------------


def db_context(db_name: str) -> dict:
    """Template values for the mail reader's connection."""
    return {
        "db_host": PG_HOST,
        "db_port": PG_PORT,
        "db_name": db_name,
        "db_user": DB_MAIL_READER,
        "db_password": stack_secrets()["reader_password"],
    }


def ensure_tls_cert(instance: Instance) -> None:
    """Make a self-signed certificate for 127.0.0.1 once, so STARTTLS and IMAPS can be tested."""
    if instance.tls_cert.exists() and instance.tls_key.exists():
        return
    instance.tls_cert.parent.mkdir(parents=True, exist_ok=True)
    run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        "-subj", f"/CN=mail-portal {instance.name} stack",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", str(instance.tls_key), "-out", str(instance.tls_cert),
    )
    instance.tls_key.chmod(0o600)


def render_dovecot(
    instance: Instance, sql_conf: str | None = None, portal_networks: str = "127.0.0.0/8 ::1",
    static_userdb: bool = False,
) -> bool:
    """Write the instance's Dovecot files; return True when something changed.

    ``sql_conf`` replaces the portal's SQL passdb and userdb (tests give the deployment guide's)."""
    conf_dir = instance.dovecot_conf.parent
    for sub in ("run", "state"):
        (conf_dir / sub).mkdir(parents=True, exist_ok=True)
    (instance.dir / "log").mkdir(parents=True, exist_ok=True)
    instance.mail_root.mkdir(parents=True, exist_ok=True)
    shutil.chown(instance.mail_root, VMAIL, VMAIL)
    shutil.chown(instance.mail_root.parent, VMAIL, VMAIL)
    context = {
        **db_context(instance.db_name),
        "instance_name": instance.name,
        "instance_dir": str(instance.dir),
        "config_dir": str(conf_dir),
        "mail_root": str(instance.mail_root),
        "vmail_user": VMAIL,
        "imap_port": instance.imap_port,
        "lmtp_port": instance.lmtp_port,
        "smtp_port": instance.smtp_port,
        "managesieve_port": instance.managesieve_port,
        "portal_networks": portal_networks,
        "static_userdb": static_userdb,
        "imaps_port": instance.imaps_port,
        "tls_cert": str(instance.tls_cert) if instance.imaps_port else "",
        "tls_key": str(instance.tls_key) if instance.imaps_port else "",
        "postfix_auth_socket": str(instance.sasl_socket),
        # The portal's own IMAP listener, where instances have one (Dovecots the tests start beside: none).
        **mailconfig.app_password_context("127.0.0.1", instance.portal_imap_port),
        # Dovecot's quota-warning service runs the portal's command with the instance's portal.toml, which
        # is root's only (0600): the service runs as root here, as the portal's own user on a server.
        **mailconfig.quota_warning_context(str(conf_dir / mailconfig.QUOTA_WARNING_SCRIPT), "root",
                                           str(instance.portal_config)),
    }
    if sql_conf is not None:  # the guide's own passdb (scripts/guide_server): no app passwords beside it
        context["app_password_slots"] = []
    if instance.imaps_port:
        ensure_tls_cert(instance)
    series = dovecot_series()

    def template(name: str) -> str:
        return mailconfig.dovecot_template(name, series)

    # static_userdb: the guide's static userdb in 2.3's auth-sql.conf.ext. On 2.4 the guide's block,
    # given as sql_conf (scripts/guide_server.dovecot_sql), carries its userdb itself.
    if sql_conf is None:
        sql_conf = mailconfig.render(template("dovecot-sql.conf.ext"), **context)
    changed = mailconfig.write(conf_dir / "dovecot-sql.conf.ext", sql_conf, 0o600)
    dict_conf = conf_dir / "dovecot-dict-quota.conf.ext"
    if series == "2.3":
        # Dovecot 2.3's dict process reads this file itself, as the dovecot user: group-readable for it only.
        changed |= mailconfig.write(dict_conf, mailconfig.render(template("dovecot-dict-quota.conf.ext"), **context),
                                    0o640)
        shutil.chown(dict_conf, "root", "dovecot")
    else:  # 2.4's config process, as root, reads every file and hands the settings out
        changed |= mailconfig.write(dict_conf, mailconfig.render(template("dovecot-dict-quota.conf.ext"), **context),
                                    0o600)
    if series == "2.3":  # one SQL file per app-password slot
        for slot in context["app_password_slots"]:
            changed |= mailconfig.write(conf_dir / mailconfig.app_password_file(slot), mailconfig.render(
                template("dovecot-sql-app-password.conf.ext"), **context, slot=slot), 0o600)
    doveadm_conf = conf_dir / "mail-portal-doveadm.conf.ext"
    if instance.doveadm_port:
        changed |= mailconfig.write(doveadm_conf, mailconfig.render(
            template("mail-portal-doveadm.conf.ext"), **context, doveadm_address="127.0.0.1",
            doveadm_port=instance.doveadm_port, doveadm_api_key=stack_secrets()["doveadm_api_key"]), 0o600)
    for name in ("auth-sql.conf.ext", "99-mail-portal.conf"):
        changed |= mailconfig.write(conf_dir / "conf.d" / name, mailconfig.render(template(name), **context), 0o644)
    changed |= mailconfig.write(conf_dir / mailconfig.QUOTA_WARNING_SCRIPT,
                                mailconfig.render(mailconfig.QUOTA_WARNING_TEMPLATE, **context), 0o755)
    changed |= mailconfig.write(instance.dovecot_conf, mailconfig.render(template("dovecot.conf"), **context), 0o644)
    return changed


def dovecot_pid(instance: Instance) -> int | None:
    """Return the master pid of the instance's Dovecot when it runs."""
    pid_file = instance.dovecot_conf.parent / "run" / "master.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start_dovecot(instance: Instance, restart: bool = False) -> None:
    """Start the instance's Dovecot (restarting it when asked) and wait for IMAP."""
    pid = dovecot_pid(instance)
    if pid and restart:
        stop_dovecot(instance)
        pid = None
    if not pid:
        log(f"{instance.name}: starting Dovecot (IMAP 127.0.0.1:{instance.imap_port}, LMTP {instance.lmtp_port})")
        run_daemon("dovecot", "-c", str(instance.dovecot_conf))
    wait_for_port(instance.imap_port)
    wait_for_port(instance.lmtp_port)


def stop_dovecot(instance: Instance) -> None:
    """Stop the instance's Dovecot and wait until its ports are closed."""
    pid = dovecot_pid(instance)
    if not pid:
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + 10
    while dovecot_pid(instance) or port_open(instance.imap_port):
        if time.monotonic() > deadline:
            raise RuntimeError("Dovecot did not stop")
        time.sleep(0.05)


def render_postfix(instance: Instance) -> bool:
    """Write the instance's Postfix files; return True when something changed."""
    etc = instance.postfix_dir
    (instance.dir / "log").mkdir(parents=True, exist_ok=True)
    (instance.dir / "postfix" / "spool").mkdir(parents=True, exist_ok=True)
    data = instance.dir / "postfix" / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.chown(data, "postfix", "postfix")
    context = {
        **db_context(instance.db_name),
        "instance_name": instance.name,
        "instance_dir": str(instance.dir),
        "config_dir": str(etc),
        "lmtp_port": instance.lmtp_port,
        "smtp_address": "127.0.0.1",
        "smtp_port": instance.smtp_port,
        "submission_port": instance.submission_port,
        "sasl_socket": str(instance.sasl_socket),
        "tls_cert": str(instance.tls_cert),
        "tls_key": str(instance.tls_key),
    }
    if instance.submission_port:
        ensure_tls_cert(instance)
    changed = mailconfig.write(etc / "main.cf", mailconfig.render("postfix/main.cf", **context), 0o644)
    changed |= mailconfig.write(etc / "master.cf", mailconfig.render("postfix/master.cf", **context), 0o644)
    for name in mailconfig.POSTFIX_MAPS:
        # The maps hold the reader's password: root and postfix only.
        path = etc / name
        changed |= mailconfig.write(path, mailconfig.render(f"postfix/{name}", **context), 0o640)
        shutil.chown(path, "root", "postfix")
    return changed


def allow_postfix_instance(config_dir: Path) -> None:
    """List the instance in alternate_config_directories of the default main.cf, adding only that."""
    current = run("postconf", "-h", "alternate_config_directories").stdout.strip()
    entries = [e for e in current.replace(",", " ").split() if e]
    if str(config_dir) not in entries:
        entries.append(str(config_dir))
        run("postconf", "-e", f"alternate_config_directories = {' '.join(entries)}")


def postfix_running(instance: Instance) -> bool:
    return run("postfix", "-c", str(instance.postfix_dir), "status", check=False, quiet=True).returncode == 0


def start_postfix(instance: Instance, reload: bool = False) -> None:
    """Start the instance's Postfix (reloading it when its files changed) and wait for SMTP."""
    allow_postfix_instance(instance.postfix_dir)
    if postfix_running(instance):
        if reload:
            log(f"{instance.name}: reloading Postfix")
            run_daemon("postfix", "-c", str(instance.postfix_dir), "reload")
    else:
        log(f"{instance.name}: starting Postfix (SMTP 127.0.0.1:{instance.smtp_port})")
        run("postfix", "-c", str(instance.postfix_dir), "set-permissions", check=False, quiet=True)
        run_daemon("postfix", "-c", str(instance.postfix_dir), "start")
    wait_for_port(instance.smtp_port)
    if instance.submission_port:
        wait_for_port(instance.submission_port)


def stop_postfix(instance: Instance) -> None:
    """Stop the instance's Postfix."""
    if instance.postfix_dir.exists() and postfix_running(instance):
        run("postfix", "-c", str(instance.postfix_dir), "stop")


def write_portal_config(instance: Instance) -> Path:
    """Write the portal's TOML settings for this instance and return its path."""
    values = stack_secrets()
    text = (
        "# Written by scripts/stack for the local development stack.\n"
        f'database_url = "{database_url(instance.db_name)}"\n'
        f'secret_key = "{values["secret_key"]}"\n'
        'imap_host = "127.0.0.1"\n'
        "# The portal signs in on its own IMAP listener (mail clients use imap_port).\n"
        f"imap_port = {instance.portal_imap_port or instance.imap_port}\n"
        'imap_security = "plain"\n'
        "# Where this stack's Dovecot keeps mail (mail_location = maildir:<mail_root>/%d/%n).\n"
        f'mail_root = "{instance.mail_root}"\n'
        "# This stack's Dovecot doveadm HTTP API, to end open mail sessions.\n"
        f'doveadm_url = "{instance.doveadm_url}"\n'
        f'doveadm_api_key = "{values["doveadm_api_key"]}"\n'
        "# The demo serves plain HTTP on loopback.\n"
        "cookie_secure = false\n"
        "# Notices and recovery links go out through this stack's Postfix; links point at the demo's address.\n"
        'notice_from = "noreply@portal.invalid"\n'
        f"notice_smtp_port = {instance.smtp_port}\n"
        f'public_url = "http://{os.environ.get("PORTAL_DEMO_BIND", "127.0.0.1:8000")}"\n'
        "# The demo's admins may look around without a second factor; on a server every role must enrol one.\n"
        "second_factor_required_roles = []\n"
    )
    mailconfig.write(instance.portal_config, text, 0o600)
    write_purge_config(instance)
    return instance.portal_config


def write_purge_config(instance: Instance) -> Path:
    """Write the purge's own settings: readable by vmail, with the purge's limited database role."""
    text = (
        "# Written by scripts/stack: the settings of the purge of deleted mailboxes' mail, which runs as vmail.\n"
        f'database_url = "{database_url(instance.db_name, DB_PURGER)}"\n'
        "# Required of every portal settings file; the purge signs nothing with it.\n"
        f'secret_key = "{stack_secrets()["purge_secret_key"]}"\n'
        f'mail_root = "{instance.mail_root}"\n'
    )
    mailconfig.write(instance.purge_config, text, 0o640)
    shutil.chown(instance.purge_config, "root", VMAIL)
    return instance.purge_config


# --- commands ----------------------------------------------------------------------------


def up(instance: Instance, fresh_db: bool = False) -> Instance:
    """Bring the whole stack up for an instance; idempotent and quick when already up."""
    if os.geteuid() != 0:
        raise SystemExit("stack: run as root (scripts/stack does the set-up; see README)")
    ensure_vmail()
    ensure_cluster()
    ensure_roles()
    ensure_database(instance.db_name, fresh=fresh_db)
    migrate_database(instance.db_name)
    # A re-created database cut the connections Postfix and Dovecot held to it.
    start_dovecot(instance, restart=render_dovecot(instance) or fresh_db)
    start_postfix(instance, reload=render_postfix(instance) or fresh_db)
    write_portal_config(instance)
    return instance


def down(instance: Instance, cluster: bool = False) -> None:
    """Stop an instance's Postfix and Dovecot (and the shared cluster when asked)."""
    stop_postfix(instance)
    stop_dovecot(instance)
    if cluster:
        stop_cluster()


def status(instance: Instance) -> bool:
    """Print what runs; return True when everything does."""
    parts = {
        f"postgresql {pg_version()}/{PG_CLUSTER} :{PG_PORT}": cluster_status() == "online",
        f"dovecot imap :{instance.imap_port} lmtp :{instance.lmtp_port}": bool(dovecot_pid(instance)),
        f"postfix smtp :{instance.smtp_port}": instance.postfix_dir.exists() and postfix_running(instance),
    }
    for name, running in parts.items():
        print(f"{instance.name}: {name}: {'running' if running else 'stopped'}")
    return all(parts.values())


DEMO_DOMAIN = "example.com"
DEMO_MAILBOXES = ("alice", "bob", "postmaster")


def load_demo_data(instance: Instance) -> dict[str, str]:
    """Create the demo domain, mailboxes (new random passwords) and an alias; return the passwords."""
    import psycopg
    from psycopg.rows import dict_row

    from portal.passwords import hash_password
    from portal.queries import aliases
    from portal.queries import domains
    from portal.queries import mailboxes
    from portal.queries import roles

    passwords = {f"{local}@{DEMO_DOMAIN}": secrets.token_urlsafe(12) for local in DEMO_MAILBOXES}
    with psycopg.connect(database_url(instance.db_name), autocommit=True, row_factory=dict_row) as conn:
        with conn.transaction():
            domain_id = domains.ensure_domain(conn, DEMO_DOMAIN)
            for address, password in passwords.items():
                mailboxes.upsert_mailbox(conn, domain_id, address, hash_password(password))
            aliases.ensure_alias(conn, domain_id, f"info@{DEMO_DOMAIN}", f"alice@{DEMO_DOMAIN}")
            # The demo's postmaster can try the admin pages.
            postmaster = mailboxes.get_mailbox(conn, f"postmaster@{DEMO_DOMAIN}")
            roles.grant(conn, postmaster["id"], "superadmin", None)
    return passwords


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "env", "demo"))
    parser.add_argument("--instance", choices=sorted(INSTANCES), default="dev")
    parser.add_argument("--fresh-db", action="store_true", help="drop and re-create the instance's database")
    parser.add_argument("--all", action="store_true", help="with down: also stop the PostgreSQL cluster")
    args = parser.parse_args(argv)
    instance = INSTANCES[args.instance]
    try:
        if args.command == "up":
            up(instance, fresh_db=args.fresh_db)
            status(instance)
        elif args.command == "down":
            down(instance, cluster=args.all)
        elif args.command == "status":
            return 0 if status(instance) else 3
        elif args.command == "demo":
            passwords = load_demo_data(instance)
            print(f"Demo data in database {instance.db_name}: domain {DEMO_DOMAIN},"
                  f" alias info@{DEMO_DOMAIN} -> alice@{DEMO_DOMAIN}, postmaster@{DEMO_DOMAIN} is a superadmin")
            for address, password in passwords.items():
                print(f"  {address:28} password: {password}")
        elif args.command == "env":
            print(f"PORTAL_CONFIG={instance.portal_config}")
    except (RuntimeError, migrate.MigrationError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
