"""Stand up a mail server as the deployment guide (../shared/seed) builds it, to prove the operator path on.

``tests/test_operator_path.py`` follows README "Production" on such a server:
the database roles, ``db upgrade`` and ``mailserver apply`` against the real
``/etc/postfix`` and ``/etc/dovecot``, the system's PostgreSQL on 5432, Postfix
on 25 and Dovecot on 143. ``scripts/other_release.py`` runs it in a minimal root
of each Debian release, in a network namespace of its own.

It replaces ``/etc/postfix`` and ``/etc/dovecot``, so it refuses to run anywhere
but in such a root (the marker file ``THROWAWAY_MARKER``, which
``other_release.prepare`` writes there). Each run starts from the packages'
files as they were first found here, and from an empty ``mailserver`` database.

What the guide prints is taken verbatim: its SQL, its ``main.cf`` lines, its
``pgsql-users.cf``, its Dovecot lines and its ``vmail`` commands. What it leaves
out, a working server has anyway, and the test needs it: the two Postfix maps it
names but does not print (the standard queries of the tutorials it follows), the
LMTP socket ``virtual_transport`` points at, and the mail log. On Debian 13 its
Dovecot lines are written in Dovecot 2.4's language, as an operator following
the guide there must (``../shared/notes/debian13-dovecot24.md``), without Debian 13's
``auth_username_format`` for LMTP, which refuses every virtual mailbox.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
import stack  # noqa: E402

THROWAWAY_MARKER = Path("/etc/mail-portal-throwaway-root")
PRISTINE = Path("/var/lib/mail-portal-guide-server/pristine")
POSTFIX_DIR = Path("/etc/postfix")
DOVECOT_DIR = Path("/etc/dovecot")
MAIL_ROOT = Path("/var/mail/vhosts")
MAIL_LOG = Path("/var/log/mail.log")
DOVECOT_LOG = Path("/var/log/dovecot.log")
PG_PORT = 5432
DB_NAME = "mailserver"
DB_USER = "mailuser"
DB_PASSWORD = "strongpassword"  # noqa: S105 - the guide's own, in a throwaway root
DOMAIN = "guide.example"
# Mailboxes and an alias as the guide's operators add them (section 7, step 1).
MAILBOXES = {"anna@guide.example": "anna's guide password 1", "ben@guide.example": "ben's guide password 2",
             "carl@guide.example": "carl's guide password 3"}
ALIASES = {"info@guide.example": "anna@guide.example"}

# Section 3, verbatim (the same file test_migrations adopts).
GUIDE_SCHEMA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "guide_schema.sql"

# Section 4: the main.cf lines, and pgsql-users.cf verbatim; the other two maps are named but not printed.
GUIDE_MAIN_CF = {
    "virtual_mailbox_domains": "pgsql:/etc/postfix/pgsql-domains.cf",
    "virtual_mailbox_maps": "pgsql:/etc/postfix/pgsql-users.cf",
    "virtual_alias_maps": "pgsql:/etc/postfix/pgsql-aliases.cf",
    "virtual_transport": "lmtp:unix:private/dovecot-lmtp",
}
# pgsql-users.cf as the guide prints it, and the other two with the tutorials' standard queries
# (the same files test_migrations adopts; tests/fixtures/README.md).
GUIDE_MAPS = GUIDE_SCHEMA.parent / "guide_postfix"



def dovecot_sql(series: str, db_host: str, db_port: int, db_name: str, db_user: str, db_password: str,
                mail_root: str = str(MAIL_ROOT)) -> str:
    """The guide's SQL passdb for Dovecot: its dovecot-sql.conf.ext (2.3), or the same in 2.4's language.

    2.3: the guide's file verbatim, the port added to its connect line. 2.4 has no such
    file format: the connection, the passdb with the guide's query and its static userdb
    are one block, which the guide's operator puts in conf.d/auth-sql.conf.ext."""
    if series == "2.3":
        return (f"driver = pgsql\n"
                f"connect = host={db_host} port={db_port} dbname={db_name} user={db_user} password={db_password}\n"
                "default_pass_scheme = SHA512-CRYPT\n"
                "password_query = SELECT email as user, password FROM virtual_users WHERE email='%u';\n")
    return f"""sql_driver = pgsql
pgsql {db_host} {{
  parameters {{
    port = {db_port}
    dbname = {db_name}
    user = {db_user}
    password = {db_password}
  }}
}}
passdb sql {{
  default_password_scheme = SHA512-CRYPT
  query = SELECT email as user, password FROM virtual_users WHERE email='%{{user}}'
}}
userdb static {{
  fields {{
    uid = vmail
    gid = vmail
    home = {mail_root}/%{{user | domain}}/%{{user | username}}
  }}
}}
"""


_CONNECTION = {"db_host": "127.0.0.1", "db_port": PG_PORT, "db_name": DB_NAME, "db_user": DB_USER,
               "db_password": DB_PASSWORD}

# Section 5 for Dovecot 2.3 (Debian 12), verbatim.
GUIDE_DOVECOT_23 = {
    "conf.d/10-mail.conf": {"mail_location": "maildir:/var/mail/vhosts/%d/%n"},
    "conf.d/10-auth.conf": {"disable_plaintext_auth": "yes", "auth_mechanisms": "plain login"},
    "conf.d/auth-sql.conf.ext": """passdb {
  driver = sql
  args = /etc/dovecot/dovecot-sql.conf.ext
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=/var/mail/vhosts/%d/%n
}
""",
    "dovecot-sql.conf.ext": dovecot_sql("2.3", **_CONNECTION),
}

# The same lines in Dovecot 2.4's language (Debian 13).
GUIDE_DOVECOT_24 = {
    "conf.d/10-mail.conf": {"mail_driver": "maildir",
                            "mail_path": "/var/mail/vhosts/%{user | domain}/%{user | username}",
                            # Debian 13's defaults for system users, which the guide's one line replaces.
                            "mail_home": None, "mail_inbox_path": None},
    "conf.d/10-auth.conf": {"auth_allow_cleartext": "no", "auth_mechanisms": "plain login"},
    "conf.d/auth-sql.conf.ext": dovecot_sql("2.4", **_CONNECTION),
}

# Not in the guide, but virtual_transport points at it: Dovecot's LMTP socket in Postfix's queue.
LMTP_LISTENER = """  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
"""


@dataclass(frozen=True)
class GuideServer:
    """What the test needs to know of the server it stood up."""

    series: str
    pg_version: str
    mail_database_url: str
    mailboxes: dict[str, str]
    aliases: dict[str, str]


def log(message: str) -> None:
    print(f"guide-server: {message}", flush=True)


def psql(sql: str, database: str = "postgres") -> str:
    """Run SQL as the postgres superuser of the system cluster; return psql's unaligned output."""
    result = stack.run("runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                       "-p", str(PG_PORT), "-d", database, "-f", "-", input_text=sql)
    return result.stdout.strip()


def psql_as_mailuser(sql: str) -> None:
    """Run SQL as the guide's mailuser over TCP, as the guide's operator creates the tables."""
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(PG_PORT),
                    "-U", DB_USER, "-d", DB_NAME, "-f", "-"], input=sql, text=True, check=True,
                   env={"PATH": "/usr/bin:/bin", "PGPASSWORD": DB_PASSWORD}, capture_output=True)


def stop() -> None:
    """Stop the guide server's Postfix, Dovecot and PostgreSQL, whichever run."""
    stack.run("postfix", "stop", check=False, quiet=True)
    stack.run("doveadm", "stop", check=False, quiet=True)
    if Path(f"/etc/postgresql/{stack.pg_version()}/main").exists():
        stack.run("pg_ctlcluster", stack.pg_version(), "main", "stop", "-m", "fast", check=False, quiet=True)
    deadline = time.monotonic() + 15
    while any(stack.port_open(port) for port in (25, 143, PG_PORT)) and time.monotonic() < deadline:
        time.sleep(0.2)


def restore_pristine_files() -> None:
    """/etc/postfix and /etc/dovecot as the packages installed them (saved the first time)."""
    for directory in (POSTFIX_DIR, DOVECOT_DIR):
        saved = PRISTINE / directory.name
        if not saved.exists():
            saved.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(directory, saved, symlinks=True)
        shutil.rmtree(directory)
        shutil.copytree(saved, directory, symlinks=True)
    # The test stack's Postfix instance is listed in the default main.cf (stack.allow_postfix_instance);
    # starting from the saved main.cf may drop that line, and the stack adds it again when it starts.
    shutil.rmtree(Path("/var/backups/mail-portal"), ignore_errors=True)


def set_lines(path: Path, settings: dict[str, str | None]) -> None:
    """Set ``name = value`` in a Dovecot file: replace an active line, else append; None comments it out."""
    text = path.read_text()
    for name, value in settings.items():
        pattern = re.compile(rf"^(\s*){re.escape(name)}\s*=.*$", re.M)
        if value is None:
            text = pattern.sub(lambda m: f"{m.group(1)}#{m.group(0).strip()}", text)
        elif pattern.search(text):
            text = pattern.sub(lambda m, v=value, n=name: f"{m.group(1)}{n} = {v}", text, count=1)
        else:
            text += f"{name} = {value}\n"
    path.write_text(text)


def build_database() -> None:
    """The guide's database: mailuser owns it and its tables (they were made as mailuser), with the guide's rows."""
    version = stack.pg_version()
    if not Path(f"/etc/postgresql/{version}/main").exists():
        log(f"creating the system's PostgreSQL cluster {version}/main on port {PG_PORT}")
        stack.run("pg_createcluster", version, "main", "--port", str(PG_PORT))
    stack.run_daemon("pg_ctlcluster", version, "main", "start")
    stack.wait_for_port(PG_PORT, 30)
    psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE);\n"
         "DROP ROLE IF EXISTS portal;\nDROP ROLE IF EXISTS mailpurge;\n"
         f"DROP ROLE IF EXISTS {DB_USER};\n"
         f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}';\n"
         f"CREATE DATABASE {DB_NAME} OWNER {DB_USER};\n")
    psql_as_mailuser(GUIDE_SCHEMA.read_text())
    users = []
    for address, password in MAILBOXES.items():
        # As the guide's operators hash: doveadm pw, the {SHA512-CRYPT} prefix dropped to fit VARCHAR(106).
        hashed = stack.run("doveadm", "pw", "-s", "SHA512-CRYPT", "-p", password).stdout.strip()
        users.append((hashed.removeprefix("{SHA512-CRYPT}"), address))
    with psycopg.connect(host="127.0.0.1", port=PG_PORT, dbname=DB_NAME, user=DB_USER, password=DB_PASSWORD) as conn:
        conn.execute("INSERT INTO virtual_domains (name) VALUES (%s)", (DOMAIN,))
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO virtual_users (domain_id, password, email) VALUES (1, %s, %s)", users)
            cursor.executemany("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, %s, %s)",
                               list(ALIASES.items()))


def write_postfix() -> None:
    """Section 4: the guide's main.cf lines and maps (root:postfix 0640, as its operators keep them)."""
    for name, value in GUIDE_MAIN_CF.items():
        stack.run("postconf", "-e", f"{name} = {value}")
    # Debian logs through syslog, which a minimal root lacks: Postfix's own log file instead.
    stack.run("postconf", "-e", f"maillog_file = {MAIL_LOG}")
    for source in sorted(GUIDE_MAPS.glob("*.cf")):
        path = POSTFIX_DIR / source.name
        path.write_text(source.read_text().format(db_user=DB_USER, db_password=DB_PASSWORD, db_hosts="127.0.0.1",
                                                  db_name=DB_NAME))
        shutil.chown(path, "root", "postfix")
        path.chmod(0o640)


def write_dovecot(series: str) -> None:
    """Section 5 (in 2.4's language on Debian 13), plus the LMTP socket Postfix delivers to and a log file."""
    guide = GUIDE_DOVECOT_23 if series == "2.3" else GUIDE_DOVECOT_24
    for name, content in guide.items():
        path = DOVECOT_DIR / name
        if isinstance(content, dict):
            set_lines(path, content)
        else:
            path.write_text(content)
    if series == "2.3":
        sql_conf = DOVECOT_DIR / "dovecot-sql.conf.ext"
        shutil.chown(sql_conf, "root", "root")
        sql_conf.chmod(0o600)
    auth = DOVECOT_DIR / "conf.d/10-auth.conf"
    text = auth.read_text()
    text = re.sub(r"^!include auth-system\.conf\.ext", "#!include auth-system.conf.ext", text, flags=re.M)
    text = re.sub(r"^#!include auth-sql\.conf\.ext", "!include auth-sql.conf.ext", text, flags=re.M)
    if not re.search(r"^!include auth-sql\.conf\.ext", text, flags=re.M):
        text += "!include auth-sql.conf.ext\n"
    auth.write_text(text)
    master = DOVECOT_DIR / "conf.d/10-master.conf"
    master.write_text(re.sub(r"^(service lmtp \{\n)", lambda m: m.group(1) + LMTP_LISTENER,
                             master.read_text(), count=1, flags=re.M))
    set_lines(DOVECOT_DIR / "conf.d/10-logging.conf", {"log_path": str(DOVECOT_LOG)})
    if series == "2.4":
        # Debian 13's LMTP looks users up by the local part alone (meant for system users): every delivery
        # to a guide mailbox is refused with 550 until the operator takes that line out (doctor checks it).
        set_lines(DOVECOT_DIR / "conf.d/20-lmtp.conf", {"auth_username_format": None})


def make_mail_root() -> None:
    """Section 6: the vmail user and the mail folder (emptied, for a fresh run)."""
    if stack.run("getent", "passwd", "vmail", check=False, quiet=True).returncode != 0:
        stack.run("groupadd", "-g", "5000", "vmail", check=False)
        stack.run("useradd", "-g", "vmail", "-u", "5000", "vmail", "-d", "/var/mail")
    shutil.rmtree(MAIL_ROOT, ignore_errors=True)
    MAIL_ROOT.mkdir(parents=True)
    stack.run("chown", "-R", "vmail:vmail", str(MAIL_ROOT))


def start() -> None:
    """Start the system's Postfix and Dovecot from /etc, and wait for SMTP and IMAP."""
    for log_file in (MAIL_LOG, DOVECOT_LOG):
        log_file.unlink(missing_ok=True)
    stack.run("postfix", "check")
    stack.run_daemon("postfix", "start")
    stack.run_daemon("dovecot")
    stack.wait_for_port(25, 30)
    stack.wait_for_port(143, 30)


def up() -> GuideServer:
    """Stand the guide's server up from scratch here; return what the test needs to know."""
    if not THROWAWAY_MARKER.exists():
        raise SystemExit(f"guide-server: replaces /etc/postfix and /etc/dovecot, so it runs only in a throwaway root"
                         f" ({THROWAWAY_MARKER} missing; scripts/other_release.py makes such roots)")
    series = stack.dovecot_series()
    log(f"standing up the deployment guide's server (Dovecot {series}, PostgreSQL {stack.pg_version()})")
    stop()
    restore_pristine_files()
    make_mail_root()
    build_database()
    write_postfix()
    write_dovecot(series)
    start()
    return GuideServer(series=series, pg_version=stack.pg_version(),
                       mail_database_url=f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{PG_PORT}/{DB_NAME}",
                       mailboxes=dict(MAILBOXES), aliases=dict(ALIASES))


if __name__ == "__main__":
    print(up())
