"""flask doctor: check the portal's parts and their configuration, and say how to fix what is wrong."""

from __future__ import annotations

import ipaddress
import re
import shutil
import smtplib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg
from flask import current_app
from flask.cli import with_appcontext

from .. import db
from .. import doveadm
from .. import dovecotconf
from .. import imap
from .. import mailconfig
from .. import migrate
from .. import sieve
from ..queries import notices as notice_queries
from ..settings import DEV_SECRET_KEY

OK, FAIL, SKIP = "ok", "FAIL", "skip"
# App-password passdbs read this table; the main passdb does not.
APP_SLOT_TABLE = "portal_app_passwords"


@dataclass
class Finding:
    """The outcome of one check: its state, what was found, and how to fix it."""

    state: str
    text: str
    fix: str = ""


class Doctor:
    """The checks, in order; later ones use what earlier ones found (the connection, a known mailbox)."""

    def __init__(self, config, postfix_dir: Path, dovecot_config: str | None,
                 debug: bool = False, behind_proxy: bool = False):
        self.config = config
        self.debug = debug
        self.behind_proxy = behind_proxy
        self.postfix_dir = postfix_dir
        self.dovecot_config = dovecot_config
        self.conn = None
        self.portal_address = None
        self._dovecot_settings = None

    def checks(self) -> list[tuple[str, Callable[[], Finding]]]:
        return [
            ("database", self.database), ("migrations", self.migrations), ("dovecot", self.dovecot),
            ("auth penalty", self.trusted_networks), ("postfix maps", self.postfix_maps),
            ("disabled accounts", self.disabled_accounts), ("one-time passwords", self.one_time_passwords),
            ("app passwords", self.app_passwords),
            ("mail root", self.mail_root), ("mail sessions", self.mail_sessions), ("auth cache", self.auth_cache),
            ("dovecot variables", self.old_variables), ("user names", self.user_names),
            ("quota plugins", self.quota_plugins), ("quota warnings", self.quota_warnings),
            ("mail filters", self.mail_filters),
            ("old sieve scripts", self.old_sieve_scripts),
            ("notices", self.notices),
            ("secret key", self.secret_key),
            ("debug mode", self.debug_mode), ("cookies", self.cookies), ("proxy", self.proxy),
        ]

    def database(self) -> Finding:
        try:
            self.conn = db.connect(self.config)
            self.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return Finding(FAIL, f"cannot connect: {str(exc).strip().splitlines()[0]}",
                           "check database_url (PORTAL_DATABASE_URL) and that PostgreSQL is running and reachable")
        return Finding(OK, "reachable")

    def migrations(self) -> Finding:
        if self.conn is None:
            return Finding(SKIP, "no database connection")
        pending = migrate.pending_migrations(self.conn)
        if pending:
            return Finding(FAIL, f"{len(pending)} migrations pending", "run: flask --app app db upgrade")
        return Finding(OK, f"at version {migrate.latest_version()}")

    def dovecot(self) -> Finding:
        try:
            client = imap.connect_from_config(self.config)
        except imap.ImapUnavailable as exc:
            return Finding(FAIL, str(exc), "check imap_host, imap_port and imap_security, and that Dovecot runs")
        try:
            self.portal_address = client.socket().getsockname()[0]
            capabilities = [c.decode("ascii", "replace").upper() for c in client.capabilities()]
        finally:
            try:
                client.logout()
            except Exception:  # noqa: S110 - only closing
                pass
        if "AUTH=PLAIN" not in capabilities:
            return Finding(FAIL, "Dovecot does not offer AUTHENTICATE PLAIN on this connection",
                           "set auth_mechanisms = plain login, and use imap_security = starttls or tls if the portal"
                           " is not on Dovecot's host (Dovecot hides PLAIN on unencrypted remote connections)")
        return Finding(OK, f"answers at {self.config['IMAP_HOST']}:{self.config['IMAP_PORT']} with AUTH=PLAIN")

    def trusted_networks(self) -> Finding:
        if self.portal_address is None:
            return Finding(SKIP, "Dovecot did not answer")
        dovecot = self._dovecot()
        if isinstance(dovecot, Finding):
            dovecot.fix = f"on the Dovecot host, make login_trusted_networks include {self.portal_address}"
            return dovecot
        address = ipaddress.ip_address(self.portal_address)
        networks = []
        for item in dovecot.value("login_trusted_networks").split():
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue
        if any(address.version == n.version and address in n for n in networks):
            return Finding(OK, f"Dovecot trusts the portal's address {address} to name the real client")
        return Finding(FAIL, f"the portal connects from {address}, which login_trusted_networks does not include:"
                             " one attacker's failed sign-ins slow every user's",
                       f"add {address} to login_trusted_networks (conf.d/99-mail-portal.conf from config render)")

    def _known(self) -> tuple[str | None, str | None]:
        mailbox = self.conn.execute(
            "SELECT u.email FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id"
            " WHERE u.active AND d.active ORDER BY u.id LIMIT 1").fetchone()
        alias = self.conn.execute(
            "SELECT a.source FROM virtual_aliases a JOIN virtual_domains d ON d.id = a.domain_id"
            " WHERE d.active AND a.source <> a.destination AND a.source NOT LIKE '@%%' ORDER BY a.id LIMIT 1"
        ).fetchone()
        return (mailbox["email"] if mailbox else None), (alias["source"] if alias else None)

    def postfix_maps(self) -> Finding:
        if self.conn is None:
            return Finding(SKIP, "no database connection")
        postmap = shutil.which("postmap") or ("/usr/sbin/postmap" if Path("/usr/sbin/postmap").exists() else None)
        if postmap is None:
            return Finding(SKIP, "Postfix is not on this host", "run flask doctor on the Postfix host as well")
        mailbox, alias = self._known()
        answers = []
        for name, key in (("pgsql-users.cf", mailbox), ("pgsql-aliases.cf", alias)):
            path = self.postfix_dir / name
            if key is None:
                continue
            if not path.exists():
                return Finding(FAIL, f"{path} does not exist", "run flask --app app config render, see README")
            try:
                result = subprocess.run([postmap, "-q", key, f"pgsql:{path}"],  # noqa: S603
                                        capture_output=True, text=True, timeout=20)
            except (subprocess.TimeoutExpired, OSError) as exc:
                return Finding(FAIL, f"postmap -q {key} pgsql:{path} did not finish ({type(exc).__name__})",
                               "check that PostgreSQL answers from the Postfix host")
            if result.returncode != 0 or not result.stdout.strip():
                return Finding(FAIL, f"postmap -q {key} pgsql:{path} found nothing"
                                     f"{': ' + result.stderr.strip()[:200] if result.stderr.strip() else ''}",
                               "check the map's user, password, hosts and dbname (config render writes them)")
            answers.append(f"{key} in {name}")
        if not answers:
            return Finding(SKIP, "no mailbox or alias to look up yet")
        return Finding(OK, "Postfix finds " + " and ".join(answers))

    def disabled_accounts(self) -> Finding:
        files = [self.postfix_dir / "pgsql-users.cf"]
        stale = []
        for path in files:
            try:
                text = path.read_text()
            except OSError:
                return Finding(SKIP, f"cannot read {path}", "run doctor as root on the mail host")
            queries = re.findall(r"^\s*query\s*=.*(?:\n[ \t]+.*)*", text, re.M)
            if not queries or not all(re.search(r"\bactive\b", q) for q in queries):
                stale.append(str(path))
        dovecot_queries = self._password_queries()
        if isinstance(dovecot_queries, Finding):
            return dovecot_queries
        stale += [where for where, query in dovecot_queries if not re.search(r"\bactive\b", query)]
        if stale:
            return Finding(FAIL, "these queries ignore disabled mailboxes and domains (the deployment guide's"
                                 " originals): " + ", ".join(stale),
                           "install the files of flask --app app config render and reload Postfix and Dovecot")
        # Where there is a disabled mailbox and Postfix is here, ask the live map about it too.
        postmap = shutil.which("postmap") or ("/usr/sbin/postmap" if Path("/usr/sbin/postmap").exists() else None)
        disabled = self.conn.execute(
            "SELECT u.email FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id"
            " WHERE NOT (u.active AND d.active) ORDER BY u.id LIMIT 1").fetchone() if self.conn else None
        if postmap and disabled:
            try:
                result = subprocess.run([postmap, "-q", disabled["email"], f"pgsql:{files[0]}"],  # noqa: S603
                                        capture_output=True, text=True, timeout=20)
            except (subprocess.TimeoutExpired, OSError) as exc:
                return Finding(FAIL, f"postmap did not finish ({type(exc).__name__})",
                               "check that PostgreSQL answers from the Postfix host")
            if result.stdout.strip():
                return Finding(FAIL, f"Postfix still accepts the disabled mailbox {disabled['email']} ({files[0]})",
                               "install the files of flask --app app config render and reload Postfix")
            return Finding(OK, f"the queries check the active flags; Postfix refuses the disabled {disabled['email']}")
        return Finding(OK, "the Postfix and Dovecot queries check the active flags of mailboxes and domains")

    def _dovecot(self) -> dovecotconf.DovecotSettings | Finding:
        """Dovecot's effective settings (doveconf -n, read once), or a skip saying why they cannot be read."""
        if self._dovecot_settings is None:
            try:
                self._dovecot_settings = dovecotconf.read(self.dovecot_config)
            except dovecotconf.DoveconfUnavailable as exc:
                self._dovecot_settings = Finding(SKIP, str(exc))
        if isinstance(self._dovecot_settings, Finding):
            return Finding(SKIP, self._dovecot_settings.text, "run doctor as root on the Dovecot host")
        return self._dovecot_settings

    def mail_root(self) -> Finding:
        """mail_root must be where Dovecot keeps mail, or purge finds nothing and the next owner reads old mail."""
        root = str(self.config.get("MAIL_ROOT") or "").rstrip("/")
        dovecot = self._dovecot()
        if isinstance(dovecot, Finding):
            return dovecot
        if dovecot.series == "2.4":
            location = f"{dovecot.value('mail_driver')}:{dovecot.value('mail_path')}"
            wanted, where = f"maildir:{root}/%{{user | domain}}/%{{user | username}}", "mail_driver and mail_path"
        else:
            location = dovecot.value("mail_location")
            wanted, where = f"maildir:{root}/%d/%n", "mail_location"
        if location.split(":")[0] == "maildir" and ":".join(location.split(":")[:2]).rstrip("/") == wanted:
            return Finding(OK, f"Dovecot keeps mail in {root}/<domain>/<local part>, where purge looks")
        verb = "is" if dovecot.series == "2.3" else "are"
        return Finding(FAIL, f"mail_root is {root or '(unset)'}, but Dovecot's {where} {verb} {location or '(unset)'}:"
                             " purge would find no maildir and the address's next owner could read the old mail",
                       f"set mail_root to the folder Dovecot keeps domains in, or point {where} at {wanted}")

    def mail_sessions(self) -> Finding:
        """Without the doveadm API, a disabled or deleted mailbox's open IMAP sessions go on reading mail."""
        fix = ("set doveadm_url and doveadm_api_key, then install mail-portal-doveadm.conf.ext from"
               " flask --app app config render and reload Dovecot (README, Production)")
        if not doveadm.is_configured(self.config):
            return Finding(FAIL, "doveadm_url is not set: a mail client connected to a mailbox that is disabled,"
                                 " deleted or given a new password keeps reading its mail", fix)
        try:
            doveadm.kick(self.config, ["nobody@doctor.invalid"])
        except doveadm.DoveadmUnavailable as exc:
            return Finding(FAIL, str(exc), fix)
        return Finding(OK, f"Dovecot's doveadm API answers at {self.config['DOVEADM_URL']}: open sessions are ended")

    def auth_cache(self) -> Finding:
        """A cached login outlives a disable or a new password: the cache must stay off."""
        dovecot = self._dovecot()
        if isinstance(dovecot, Finding):
            return dovecot
        size = dovecot.value("auth_cache_size", "0")
        if size not in ("0", ""):
            return Finding(FAIL, f"Dovecot's auth cache is on (auth_cache_size = {size}): a disabled mailbox keeps"
                                 " logging in, and an old password or a revoked app password keeps working, until"
                                 " the cache forgets them",
                           "set auth_cache_size = 0 (the default) and reload Dovecot")
        return Finding(OK, "off: a disable or a new password counts at the next login")

    def _password_queries(self) -> list[tuple[str, str]] | Finding:
        dovecot = self._dovecot()
        if isinstance(dovecot, Finding):
            return dovecot
        try:
            queries = dovecotconf.sql_password_queries(dovecot)
        except OSError as exc:
            return Finding(SKIP, f"cannot read {exc.filename}", "run doctor as root on the Dovecot host")
        if not queries:
            return Finding(FAIL, "Dovecot has no SQL passdb: it does not check passwords against the portal's tables",
                           "install the files of flask --app app config render and reload Dovecot")
        return queries

    def one_time_passwords(self) -> Finding:
        queries = self._password_queries()
        if isinstance(queries, Finding):
            return queries
        main = [(where, query) for where, query in queries if APP_SLOT_TABLE not in query]
        lenient = [where for where, query in main if "password_must_change" not in query]
        if lenient:
            return Finding(FAIL, f"Dovecot's password query ({', '.join(lenient)}) lets mail clients use a password"
                                 " the helpdesk or an admin has seen (a reset or one-time password)",
                           "install the files of flask --app app config render and reload Dovecot")
        return Finding(OK, "Dovecot refuses one-time passwords to mail clients")

    def app_passwords(self) -> Finding:
        """Dovecot checks every app-password slot, and keeps the main password from mail clients that must use app
        passwords (on the portal's own listener only is it accepted)."""
        queries = self._password_queries()
        if isinstance(queries, Finding):
            return queries
        fix = "install the files of flask --app app config render and reload Dovecot"
        slots = sorted({int(m.group(1)) for _where, query in queries if APP_SLOT_TABLE in query
                        for m in [re.search(r"\bslot\s*=\s*(\d+)", query)] if m})
        if slots != list(range(1, mailconfig.APP_PASSWORD_SLOTS + 1)):
            return Finding(FAIL, f"Dovecot checks app passwords in slots {slots or 'none'} of 1-"
                                 f"{mailconfig.APP_PASSWORD_SLOTS}: the others fail in mail clients", fix)
        main = [where for where, query in queries
                if APP_SLOT_TABLE not in query and "mail_clients_use_app_passwords" not in query]
        if main:
            return Finding(FAIL, f"Dovecot's password query ({', '.join(main)}) lets mail clients use the main password"
                                 " of a mailbox kept to app passwords: its second factor protects nothing", fix)
        port = int(self.config["IMAP_PORT"])
        if port in mailconfig.MAIL_CLIENT_IMAP_PORTS:
            return Finding(OK, f"all {len(slots)} slots; the portal signs in on port {port}, which mail clients use:"
                               " it checks the main password of a mailbox kept to app passwords itself, after"
                               " Dovecot's failure delay (give imap_port a port of its own, such as 10143, and"
                               " render again, for a fast sign-in)")
        return Finding(OK, f"all {len(slots)} slots; the main password of a mailbox kept to app passwords works on"
                           f" the portal's own port {port} only")

    def old_variables(self) -> Finding:
        """Dovecot 2.4 sends a 2.3 variable such as %u literally: every login fails as a wrong password."""
        dovecot = self._dovecot()
        if isinstance(dovecot, Finding):
            return dovecot
        if dovecot.series != "2.4":
            return Finding(OK, "Dovecot 2.3: its own variables")
        stale = dovecotconf.leftover_old_variables(dovecot)
        if stale:
            return Finding(FAIL, "these Dovecot 2.4 settings use 2.3 variables (such as %u), which 2.4 sends"
                                 f" literally, so logins and deliveries fail: {', '.join(stale)}",
                           "write %{user}, %{user | username}, %{user | domain}, %{user | lower} (or install the"
                           " files of flask --app app config render --dovecot 2.4) and reload Dovecot")
        return Finding(OK, "Dovecot 2.4 variables only")

    def user_names(self) -> Finding:
        """Mailboxes are full addresses: a lookup by the local part alone finds nobody (LMTP answers 550)."""
        dovecot = self._dovecot()
        if isinstance(dovecot, Finding):
            return dovecot
        formats = dovecotconf.username_formats(dovecot)
        local_only = [f"{where} ({value})" for where, value in formats.items() if dovecotconf.drops_the_domain(value)]
        if local_only:
            return Finding(FAIL, "auth_username_format drops the domain for " + ", ".join(local_only) + ": Dovecot"
                                 " looks mailboxes up without their domain, so those logins fail and every delivery"
                                 " is refused with 550 User doesn't exist",
                           "remove that auth_username_format (on Debian 13 it is in conf.d/20-lmtp.conf, meant for"
                           " system users) or make it keep the domain, then reload Dovecot")
        return Finding(OK, "Dovecot looks mailboxes up by their full address")

    def quota_plugins(self) -> Finding:
        """Quota is enforced at delivery and shown over IMAP only where the protocols really load the plugins."""
        missing = []
        try:
            for protocol, wanted in (("lmtp", {"quota", "quota_clone"}), ("imap", {"quota", "quota_clone",
                                                                                   "imap_quota"})):
                loaded = dovecotconf.protocol_plugins(self.dovecot_config, protocol)
                missing += [f"{name} for {protocol}" for name in sorted(wanted - loaded)]
        except dovecotconf.DoveconfUnavailable as exc:
            return Finding(SKIP, str(exc), "run doctor as root on the Dovecot host")
        if missing:
            return Finding(FAIL, "Dovecot does not load " + ", ".join(missing) + ": mail over the limit is accepted"
                                 " or usage is not copied for the portal",
                           "a protocol lmtp or imap section of an earlier file (often conf.d/20-lmtp.conf with"
                           " Sieve) sets mail_plugins without the quota plugins: add quota quota_clone there")
        return Finding(OK, "LMTP and IMAP load quota and quota_clone (IMAP also imap_quota)")

    def quota_warnings(self) -> Finding:
        """Users are warned at 80 % and 95 % only where Dovecot runs the portal's quota-warning script."""
        dovecot = self._dovecot()
        if isinstance(dovecot, Finding):
            return dovecot
        hook = dovecotconf.quota_warning_hook(dovecot)
        fix = ("install conf.d/99-mail-portal.conf and mail-portal-quota-warning.sh from flask --app app config"
               " render (README, Production), then reload Dovecot")
        missing = [f"{percent} %" for percent in (95, 80) if percent not in hook.percentages]
        if not hook.executable or missing:
            what = (f"no quota warning at {' and '.join(missing)} runs Dovecot's quota-warning service"
                    if hook.executable else "Dovecot has no quota-warning service")
            return Finding(FAIL, f"{what}: users are not warned before their mailbox is full and refuses mail", fix)
        words = hook.executable.split()
        script = Path(words[1] if len(words) > 1 and Path(words[0]).name == "script" else words[0])
        try:
            info = script.stat()
            text = script.read_text(errors="replace") if info.st_mode & 0o111 else ""
        except PermissionError:
            return Finding(SKIP, f"cannot read {script}, which Dovecot's quota-warning service runs",
                           "run doctor as root on the Dovecot host")
        except OSError as exc:
            return Finding(FAIL, f"Dovecot's quota-warning service runs {script}: {exc.strerror}", fix)
        if not info.st_mode & 0o111:
            return Finding(FAIL, f"{script}, which Dovecot's quota-warning service runs, is not executable",
                           f"chmod 0755 {script}")
        if "notices quota-warning" not in text:
            return Finding(FAIL, f"{script}, which Dovecot's quota-warning service runs, does not call the portal's"
                                 " notices quota-warning command", fix)
        unreadable = settings_unreadable(text, hook.user or "root")
        if unreadable:
            return Finding(FAIL, f"{script} runs the portal as {hook.user or 'root'}, but {unreadable}",
                           "make the portal's settings readable by that user (README, Production: root:mail-portal,"
                           " mode 0640) or render with --portal-config and --quota-warning-user")
        limits = " and ".join(f"{percent} %" for percent in hook.percentages)
        sender = "" if self.config.get("NOTICE_FROM") else "; notice_from is not set, so the portal sends no warning"
        return Finding(OK, f"Dovecot runs {script} as {hook.user or 'root'} at {limits} of a mailbox's limit{sender}")

    def mail_filters(self) -> Finding:
        """Out-of-office replies and filters run only where LMTP loads Sieve, and are checked before they are
        installed only where Pigeonhole's compiler is."""
        try:
            loaded = dovecotconf.protocol_plugins(self.dovecot_config, "lmtp")
        except dovecotconf.DoveconfUnavailable as exc:
            return Finding(SKIP, str(exc), "run doctor as root on the Dovecot host")
        if "sieve" not in loaded:
            return Finding(FAIL, "LMTP does not load the sieve plugin: out-of-office replies and filters are saved"
                                 " but never run",
                           "install dovecot-sieve, install 99-mail-portal.conf from"
                           " flask --app app config render (it adds sieve to LMTP), then reload Dovecot")
        if sieve.compile_command() is None:
            return Finding(FAIL, "sievec is missing where the portal runs: a script is then checked only by Dovecot,"
                                 " which refuses a broken one without saying why",
                           "apt-get install dovecot-sieve on the portal's host")
        return Finding(OK, "LMTP runs Sieve, and the portal compiles each script before installing it")

    def old_sieve_scripts(self) -> Finding:
        """Scripts made active at Debian's default place, ~/.dovecot.sieve, stop running under the portal's
        configuration (~/sieve-active): in a maildir home that name shows up in IMAP as a folder."""
        root = Path(str(self.config.get("MAIL_ROOT") or ""))
        if not root.is_absolute() or not root.is_dir():
            return Finding(SKIP, f"mail_root {root} is not a folder here", "run doctor on the mail host")
        try:
            old = [path for path in root.glob("*/*/.dovecot.sieve") if path.is_symlink() or path.is_file()]
        except OSError as exc:
            return Finding(SKIP, f"{root} cannot be read: {exc}", "run doctor as root on the mail host")
        if old:
            return Finding(FAIL, f"{len(old)} mailbox(es) have an active Sieve script at ~/.dovecot.sieve (for"
                                 f" example {old[0]}): it no longer runs, since the portal's configuration keeps"
                                 " the active link at ~/sieve-active",
                           f'move each link: for l in {root}/*/*/.dovecot.sieve; do mv -n "$l"'
                           ' "$(dirname "$l")/sieve-active"; done')
        return Finding(OK, "no active script left at the old place (~/.dovecot.sieve)")

    def notices(self) -> Finding:
        config = self.config
        if not config.get("NOTICE_FROM"):
            return Finding(SKIP, "notice_from is not set: users are not told of password or forwarding changes,"
                                 " and there is no 'forgot password'",
                           "set notice_from (an address Postfix takes mail from on loopback) and public_url")
        try:
            with smtplib.SMTP(config["NOTICE_SMTP_HOST"], int(config["NOTICE_SMTP_PORT"]),
                              timeout=float(config["NOTICE_SMTP_TIMEOUT"])) as smtp:
                code, _banner = smtp.noop()
        except (OSError, smtplib.SMTPException) as exc:
            return Finding(FAIL, f"the SMTP server {config['NOTICE_SMTP_HOST']}:{config['NOTICE_SMTP_PORT']} does"
                                 f" not answer: {exc}", "check notice_smtp_host and notice_smtp_port, and Postfix")
        if code != 250:
            return Finding(FAIL, f"the SMTP server answers NOOP with {code}", "check Postfix")
        if self.conn is not None:
            waiting = notice_queries.unsent(self.conn)
            if waiting["count"] and waiting["most_attempts"] >= 3:
                return Finding(FAIL, f"{waiting['count']} notices wait, the oldest since"
                                     f" {waiting['oldest']:%Y-%m-%d %H:%M} UTC, after failed tries",
                               "see the log for why; then run flask --app app notices send (the"
                               " mail-portal-notices timer does every 5 minutes)")
        if not config.get("PUBLIC_URL"):
            return Finding(SKIP, f"sent from {config['NOTICE_FROM']}, but public_url is not set: no links, and no"
                                 " 'forgot password'", "set public_url to the address users reach the portal at")
        return Finding(OK, f"sent from {config['NOTICE_FROM']} through {config['NOTICE_SMTP_HOST']}:"
                           f"{config['NOTICE_SMTP_PORT']}; links to {config['PUBLIC_URL']}")

    def secret_key(self) -> Finding:
        secret = self.config.get("SECRET_KEY") or ""
        if secret == DEV_SECRET_KEY or len(secret) < 32 or len(set(secret)) < 10:
            return Finding(FAIL, "the secret key is missing, the default, short or repetitive",
                           'set secret_key to: python3 -c "import secrets; print(secrets.token_hex(32))"')
        return Finding(OK, f"{len(secret)} characters")

    def debug_mode(self) -> Finding:
        if self.debug:
            return Finding(FAIL, "Flask's debug mode is on: it shows code and values to anyone who causes an error",
                           "unset FLASK_DEBUG (and never pass --debug) where the portal serves people")
        return Finding(OK, "off")

    def proxy(self) -> Finding:
        trusted = int(self.config.get("TRUSTED_PROXY_COUNT", 0))
        if self.behind_proxy and not trusted:
            return Finding(FAIL, "behind a proxy, but trusted_proxy_count is 0: every client looks like the proxy,"
                                 " so one client's failed sign-ins lock everyone out",
                           "set trusted_proxy_count = 1 for one nginx in front (README, Production)")
        if not self.behind_proxy and trusted:
            return Finding(OK, f"{trusted} proxy hop trusted (run doctor with --behind-proxy to check it is meant)")
        return Finding(OK, "behind a proxy, trusted" if trusted else "no proxy in front (--behind-proxy if there is)")

    def cookies(self) -> Finding:
        if not self.config.get("COOKIE_SECURE"):
            return Finding(FAIL, "cookie_secure is off: the session cookie would travel over plain HTTP",
                           "serve the portal over HTTPS (README, nginx example) and set cookie_secure = true")
        if not int(self.config.get("TRUSTED_PROXY_COUNT", 0)):
            return Finding(OK, "cookies are HTTPS-only (no proxy is trusted: client addresses are the socket's;"
                               " behind nginx set trusted_proxy_count = 1)")
        return Finding(OK, f"cookies are HTTPS-only; {self.config['TRUSTED_PROXY_COUNT']} proxy hop trusted")


def settings_unreadable(script_text: str, user: str) -> str:
    """Why ``user`` cannot read the settings file a quota-warning script names ("" when it can, or it names none)."""
    import grp
    import os
    import pwd
    import shlex

    named = re.search(r"(?m)^PORTAL_CONFIG=(.+)$", script_text)
    if not named:
        return ""
    try:
        path = Path(shlex.split(named.group(1))[0])
        info = path.stat()
    except (ValueError, IndexError):
        return "the settings file it names cannot be read from the script"
    except FileNotFoundError:
        return f"the settings file it names, {named.group(1).strip()}, does not exist"
    except OSError:
        return ""  # doctor itself cannot look: nothing to say
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return f"there is no user {user} on this host (Dovecot would not start the service)"
    if account.pw_uid == 0:
        return ""
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}

    def allows(status: os.stat_result, bit: int) -> bool:  # bit: 4 read, 1 search, for owner, group or others
        if status.st_uid == account.pw_uid:
            return bool(status.st_mode & (bit << 6))
        return bool(status.st_mode & (bit << 3 if status.st_gid in groups else bit))

    for folder in path.absolute().parents:
        if not allows(folder.stat(), 1):
            return f"{user} cannot enter {folder}, where the settings file {path} is"
    if not allows(info, 4):
        return f"{path} is not readable by {user} (mode {info.st_mode & 0o777:o})"
    return ""


def run_checks(doctor: Doctor, prefix: str = "") -> int:
    """Run every check, print each finding (and its fix when it is not ok); return how many failed."""
    failed = 0
    try:
        for name, check in doctor.checks():
            finding = check()
            failed += finding.state == FAIL
            click.echo(f"{prefix}{finding.state:<4}  {name}: {finding.text}")
            if finding.fix and finding.state != OK:
                click.echo(f"{prefix}      fix: {finding.fix}")
    finally:
        if doctor.conn is not None:
            doctor.conn.close()
    return failed


@click.command("doctor")
@with_appcontext
@click.option("--postfix-dir", default="/etc/postfix", show_default=True, type=click.Path(path_type=Path))
@click.option("--dovecot-config", help="Dovecot's main config file for doveconf -c (default: its own).")
@click.option("--behind-proxy", is_flag=True, help="The portal is served through a reverse proxy such as nginx.")
def doctor_command(postfix_dir: Path, dovecot_config: str | None, behind_proxy: bool):
    """Check the database, Dovecot, Postfix and the portal's settings; exit 0 only if nothing failed."""
    doctor = Doctor(current_app.config, postfix_dir, dovecot_config,
                    debug=current_app.debug, behind_proxy=behind_proxy)
    if run_checks(doctor):
        raise SystemExit(1)
    click.echo("all checks passed")
