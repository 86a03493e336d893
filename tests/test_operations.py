"""config render and doctor, against the test stack's own Postfix, Dovecot and PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import stack  # noqa: E402

from portal import dovecotconf  # noqa: E402
from portal.cli.config import warning_service_user  # noqa: E402
from tests.mail import make_mailbox  # noqa: E402

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 16"
POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def mail_data(db):
    make_mailbox(db, "known@ops.example", PASSWORD)
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'team@ops.example',"
               " 'known@ops.example' FROM virtual_domains WHERE name = 'ops.example'")


def test_render_writes_tight_files_and_never_prints_the_password(app, mail_stack, tmp_path, mail_data):
    reader = stack.db_context(mail_stack.db_name)
    url = (f"host={reader['db_host']} port={reader['db_port']} dbname={reader['db_name']} user={reader['db_user']}"
           f" password={reader['db_password']}")
    result = run(app, "config", "render", str(tmp_path), "--database-url", url,
                 "--postfix-dir", str(mail_stack.postfix_dir), "--dovecot-dir", str(mail_stack.dovecot_conf.parent))
    assert result.exit_code == 0, result.output
    assert reader["db_password"] not in result.output
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_file()}
    assert modes == {
        "postfix/pgsql-domains.cf": 0o640, "postfix/pgsql-users.cf": 0o640, "postfix/pgsql-aliases.cf": 0o640,
        "postfix/pgsql-recipient-access.cf": 0o640, "postfix/pgsql-sender-login.cf": 0o640,
        "postfix/main.cf.portal": 0o644, "postfix/master.cf.portal": 0o644,
        "dovecot/dovecot-sql.conf.ext": 0o600,
        "dovecot/conf.d/auth-sql.conf.ext": 0o644, "dovecot/conf.d/99-mail-portal.conf": 0o644,
        "dovecot/mail-portal-doveadm.conf.ext": 0o600, "dovecot/mail-portal-quota-warning.sh": 0o755,
        # Dovecot 2.4's config process reads it as root; 2.3's dict process as the dovecot group.
        "dovecot/dovecot-dict-quota.conf.ext": 0o640 if stack.dovecot_series() == "2.3" else 0o600,
        # 2.3 reads each app-password slot's query from a file of its own (2.4: in dovecot-sql.conf.ext).
        **({f"dovecot/dovecot-sql-app-password-{slot}.conf.ext": 0o600 for slot in range(1, 9)}
           if stack.dovecot_series() == "2.3" else {}),
    }
    for path in (tmp_path / "dovecot").glob("dovecot-sql-app-password-*.conf.ext"):
        assert path.read_text() == (mail_stack.dovecot_conf.parent / path.name).read_text()
    assert app.config["DOVEADM_API_KEY"] not in result.output
    # The doveadm listener and key the stack's own Dovecot runs with, included where the 99 file says.
    assert (tmp_path / "dovecot" / "mail-portal-doveadm.conf.ext").read_text() == (
        mail_stack.dovecot_conf.parent / "mail-portal-doveadm.conf.ext").read_text()
    assert f"!include_try {mail_stack.dovecot_conf.parent}/mail-portal-doveadm.conf.ext" in (
        tmp_path / "dovecot" / "conf.d" / "99-mail-portal.conf").read_text()
    # The rendered maps are the ones the stack's own Postfix uses: same text, and real answers from postmap.
    for name in ("pgsql-users.cf", "pgsql-aliases.cf", "pgsql-domains.cf", "pgsql-recipient-access.cf",
                 "pgsql-sender-login.cf"):
        assert (tmp_path / "postfix" / name).read_text() == (mail_stack.postfix_dir / name).read_text()
    # The submission service to add by hand: TLS, SASL through Dovecot's socket, the send-as map.
    submission = (tmp_path / "postfix" / "master.cf.portal").read_text()
    assert "smtpd_sender_restrictions=reject_sender_login_mismatch" in submission
    assert f"smtpd_sender_login_maps=pgsql:{mail_stack.postfix_dir}/pgsql-sender-login.cf" in submission
    assert "smtpd_tls_security_level=encrypt" in submission and "smtpd_sasl_path=private/auth" in submission
    assert "unix_listener /var/spool/postfix/private/auth {" in (
        tmp_path / "dovecot" / "conf.d" / "99-mail-portal.conf").read_text()
    answer = subprocess.run([POSTMAP, "-q", "team@ops.example", f"pgsql:{tmp_path / 'postfix' / 'pgsql-aliases.cf'}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert answer == "known@ops.example"
    # The stack's own, but for its wider trust of 127.0.0.0/8 (its tests name clients from all of it).
    stacks = (mail_stack.dovecot_conf.parent / "dovecot-sql.conf.ext").read_text()
    assert (tmp_path / "dovecot" / "dovecot-sql.conf.ext").read_text() == stacks.replace(
        "127.0.0.0/8 ::1", "127.0.0.1/32 ::1/128").replace("{127.0.0.0/8,::1}", "{127.0.0.1/32,::1/128}")
    main_cf = (tmp_path / "postfix" / "main.cf.portal").read_text()
    assert f"virtual_alias_maps = pgsql:{mail_stack.postfix_dir}/pgsql-aliases.cf" in main_cf
    assert "login_trusted_networks = 127.0.0.1/32 ::1/128" in (
        tmp_path / "dovecot" / "conf.d" / "99-mail-portal.conf").read_text()
    # Dovecot's quota-warning service runs the script beside its files, as a user that may read the settings
    # (the portal's own, mail-portal, where it exists), and the script the portal's command with them.
    user = warning_service_user()
    script_path = f"{mail_stack.dovecot_conf.parent}/mail-portal-quota-warning.sh"
    # Without PORTAL_CONFIG, the settings file the installed script names (here the stack's): a second run keeps it.
    assert f"quota warnings: Dovecot runs {script_path} as {user}, which reads {mail_stack.portal_config}" in (
        result.output)
    conf = (tmp_path / "dovecot" / "conf.d" / "99-mail-portal.conf").read_text()
    assert f"executable = script {script_path}\n  # " in conf and f"  user = {user}\n" in conf
    script = (tmp_path / "dovecot" / "mail-portal-quota-warning.sh").read_text()
    assert script.startswith("#!/bin/sh\n") and f"PORTAL_CONFIG={mail_stack.portal_config}\n" in script
    repository = Path(__file__).resolve().parent.parent
    assert f'exec {sys.executable} -m flask --app {repository}/app notices quota-warning -- "$1" "$2"' in script


def test_render_refuses_a_url_without_credentials(app, tmp_path):
    result = run(app, "config", "render", str(tmp_path), "--database-url", "postgresql://host/db")
    assert result.exit_code != 0 and "names no user, password" in result.output
    assert not any(tmp_path.iterdir())


def doctor(app, mail_stack, **overrides):
    args = ["doctor", "--postfix-dir", str(mail_stack.postfix_dir), "--dovecot-config", str(mail_stack.dovecot_conf)]
    for option, value in overrides.items():
        args[args.index("--" + option.replace("_", "-")) + 1] = value
    return run(app, *args)


def test_doctor_passes_on_the_stack(app_factory, db, mail_stack, mail_data):
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True)
    result = doctor(app, mail_stack)
    assert result.exit_code == 0, result.output
    for line in ("ok    database: reachable", "ok    dovecot: answers at 127.0.0.1:", "AUTH=PLAIN",
                 "ok    auth penalty: Dovecot trusts the portal's address 127.0.0.1",
                 "ok    postfix maps: Postfix finds known@ops.example in pgsql-users.cf and team@ops.example",
                 "ok    disabled accounts:", "ok    one-time passwords:", "ok    mail root: Dovecot keeps mail in",
                 "ok    mail sessions: Dovecot's doveadm API answers at http://127.0.0.1:", "ok    auth cache: off",
                 "ok    mail filters: LMTP runs Sieve", "ok    old sieve scripts: no active script left",
                 f"ok    quota warnings: Dovecot runs {mail_stack.dovecot_conf.parent}/mail-portal-quota-warning.sh"
                 " as root at 80 % and 95 % of a mailbox's limit",
                 f"ok    notices: sent from noreply@portal.invalid through 127.0.0.1:{mail_stack.smtp_port}; links to"
                 " https://portal.example.test/mail",
                 "ok    secret key:", "ok    cookies:",
                 "all checks passed"):
        assert line in result.output, line


def test_doctor_on_notices_that_cannot_go_out(app_factory, db, mail_stack, mail_data):
    from tests.conftest import free_port

    config = {"TESTING": False, "SECRET_KEY": os.urandom(24).hex(), "COOKIE_SECURE": True}
    result = doctor(app_factory(**config, NOTICE_FROM=""), mail_stack)
    assert "skip  notices: notice_from is not set" in result.output and result.exit_code == 0, result.output
    result = doctor(app_factory(**config, NOTICE_SMTP_PORT=free_port()), mail_stack)
    assert "FAIL  notices: the SMTP server 127.0.0.1:" in result.output and result.exit_code == 1
    db.execute("INSERT INTO portal_outbox (kind, recipient, message, attempts, last_error)"
               " VALUES ('password_changed', 'a@ops.example', 'x', 3, 'ConnectionRefusedError')")
    result = doctor(app_factory(**config), mail_stack)
    assert "FAIL  notices: 1 notices wait" in result.output and "flask --app app notices send" in result.output


def test_doctor_fails_when_mail_root_is_not_where_dovecot_keeps_mail(app_factory, db, mail_stack, mail_data):
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True, MAIL_ROOT="/var/mail/vhosts")
    result = doctor(app, mail_stack)
    assert result.exit_code == 1
    where = "mail_location is" if stack.dovecot_series() == "2.3" else "mail_driver and mail_path are"
    assert f"FAIL  mail root: mail_root is /var/mail/vhosts, but Dovecot's {where} maildir:" in result.output
    variables = "%d/%n" if stack.dovecot_series() == "2.3" else "%{user | domain}/%{user | username}"
    assert f"{mail_stack.mail_root}/{variables}" in result.output


def test_doctor_explains_each_failure(app_factory, db, mail_stack, mail_data, tmp_path):
    # A guide-built server: its original queries, which ignore disabled accounts.
    (tmp_path / "postfix").mkdir()
    (tmp_path / "dovecot").mkdir()
    users = (mail_stack.postfix_dir / "pgsql-users.cf").read_text().split("query =")[0]
    guide_users = "query = SELECT email FROM virtual_users WHERE email='%s'\n"
    (tmp_path / "postfix" / "pgsql-users.cf").write_text(users + guide_users)
    shutil.copy(mail_stack.postfix_dir / "pgsql-aliases.cf", tmp_path / "postfix")
    # Dovecot's own configuration, its passdb reading the guide's query from a file of its own
    # (doctor asks doveconf where that is): copies of the main file and conf.d/ that include it.
    conf_dir = mail_stack.dovecot_conf.parent
    installed = conf_dir / "dovecot-sql.conf.ext"
    guide_sql = tmp_path / "dovecot" / "dovecot-sql.conf.ext"
    shutil.copytree(conf_dir / "conf.d", tmp_path / "dovecot" / "conf.d")
    auth = tmp_path / "dovecot" / "conf.d" / "auth-sql.conf.ext"
    if stack.dovecot_series() == "2.3":
        guide_query = "password_query = SELECT email as user, password FROM virtual_users WHERE email='%u'\n"
        guide_sql.write_text(installed.read_text().split("user_query")[0] + guide_query)
        auth.write_text(auth.read_text().replace(f"args = {installed}", f"args = {guide_sql}"))
    else:
        guide_sql.write_text(re.sub(r"(?m)^(  query = SELECT u.email AS \"user\", u.password).*$",
                                    r"\1 FROM virtual_users u WHERE u.email = '%{user}'", installed.read_text()))
        auth.write_text(auth.read_text().replace(f"!include {installed}", f"!include {guide_sql}"))
    assert auth.read_text() != (conf_dir / "conf.d" / "auth-sql.conf.ext").read_text()
    main = mail_stack.dovecot_conf.read_text().replace(f"{conf_dir}/conf.d/", f"{tmp_path}/dovecot/conf.d/")
    (tmp_path / "dovecot" / "dovecot.conf").write_text(main)
    app = app_factory(TESTING=False, SECRET_KEY="x" * 40, COOKIE_SECURE=False)
    result = doctor(app, mail_stack, postfix_dir=str(tmp_path / "postfix"),
                    dovecot_config=str(tmp_path / "dovecot" / "dovecot.conf"))
    assert result.exit_code == 1
    out = result.output
    assert "FAIL  disabled accounts: these queries ignore disabled mailboxes" in out
    assert "FAIL  one-time passwords: Dovecot's password query" in out
    # Where the stale query is: 2.3 names the passdb's args file, 2.4 (queries inline) the passdb.
    dovecot_where = str(tmp_path / "dovecot") if stack.dovecot_series() == "2.3" else "passdb sql"
    assert str(tmp_path / "postfix" / "pgsql-users.cf") in out and dovecot_where in out
    assert "fix: install the files of flask --app app config render" in out
    assert "FAIL  secret key:" in out and "secrets.token_hex(32)" in out
    assert "FAIL  cookies: cookie_secure is off" in out
    assert "ok    postfix maps" in out  # the guide's query still finds an active mailbox


def test_doctor_when_dovecot_and_the_database_are_away(app_factory, db, mail_stack):
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), IMAP_PORT=1, IMAP_TIMEOUT=1.0,
                      DATABASE_URL="postgresql://x:x@127.0.0.1:1/x?connect_timeout=2")
    result = doctor(app, mail_stack)
    assert result.exit_code == 1
    assert "FAIL  database: cannot connect" in result.output and "fix: check database_url" in result.output
    assert "skip  migrations: no database connection" in result.output
    assert "FAIL  dovecot: cannot reach the IMAP server at 127.0.0.1:1" in result.output
    assert "Traceback" not in result.output and "x:x@" not in result.output


def test_doctor_fails_on_debug_mode_and_an_untrusted_proxy(app_factory, db, mail_stack, mail_data, monkeypatch):
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True, TRUSTED_PROXY_COUNT=0)
    monkeypatch.setenv("FLASK_DEBUG", "1")  # how debug mode reaches a deployed portal
    result = doctor(app, mail_stack)
    assert result.exit_code == 1 and "FAIL  debug mode: Flask's debug mode is on" in result.output
    monkeypatch.delenv("FLASK_DEBUG")
    result = app.test_cli_runner().invoke(args=[
        "doctor", "--postfix-dir", str(mail_stack.postfix_dir), "--dovecot-config", str(mail_stack.dovecot_conf),
        "--behind-proxy"])
    assert result.exit_code == 1 and "FAIL  proxy: behind a proxy, but trusted_proxy_count is 0" in result.output
    trusted = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True, TRUSTED_PROXY_COUNT=1)
    result = trusted.test_cli_runner().invoke(args=[
        "doctor", "--postfix-dir", str(mail_stack.postfix_dir), "--dovecot-config", str(mail_stack.dovecot_conf),
        "--behind-proxy"])
    assert result.exit_code == 0, result.output


def test_doctor_fails_without_a_way_to_end_open_mail_sessions(app_factory, db, mail_stack, mail_data):
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True, DOVEADM_URL="")
    result = doctor(app, mail_stack)
    assert result.exit_code == 1
    assert "FAIL  mail sessions: doveadm_url is not set" in result.output
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True, DOVEADM_API_KEY="k" * 30)
    result = doctor(app, mail_stack)
    assert "FAIL  mail sessions: doveadm answered HTTP 401" in result.output and "k" * 30 not in result.output


def run_as_vmail(config_path: Path, *args: str) -> tuple[int, str]:
    """Run a portal command the way the purge service does: as vmail, with PORTAL_CONFIG, in a child process.

    The child drops to vmail's uid and gid before reading any settings (this
    machine's interpreter may live where vmail cannot reach, so the child is
    forked with the modules loaded rather than started anew)."""
    import pwd

    from flask.cli import ScriptInfo  # noqa: F401 - loaded before the fork

    import portal.cli.mailboxes  # noqa: F401 - loaded before the fork
    from portal import create_app
    from portal.settings import ConfigError

    vmail = pwd.getpwnam(stack.VMAIL)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code, output = 70, ""
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(vmail.pw_gid)
            os.setuid(vmail.pw_uid)
            os.environ["PORTAL_CONFIG"] = str(config_path)
            try:
                app = create_app()
            except ConfigError as exc:
                code, output = 1, f"configuration error: {exc}"
            else:
                result = app.test_cli_runner().invoke(args=list(args))
                code, output = result.exit_code, result.output + (repr(result.exception) if result.exception
                                                                   and result.exit_code not in (0, 1) else "")
        except BaseException as exc:  # noqa: BLE001 - anything at all goes back to the test
            output += f"child failed: {exc!r}"
        finally:
            os.write(write_end, f"{code}\n{output}".encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    code, _, output = text.partition("\n")
    return int(code), output


def test_the_purge_runs_as_vmail_with_a_role_that_reads_no_mail(app, db, mail_stack):
    import psycopg

    from tests.mail import send_mail
    from tests.mail import wait_for_maildir_message

    make_mailbox(db, "gone@ops.example", PASSWORD)
    maildir = mail_stack.mail_root / "ops.example" / "gone"
    send_mail(mail_stack.smtp_port, "gone@ops.example", "kept until purged")
    wait_for_maildir_message(maildir, "kept until purged")  # written by Dovecot, as vmail
    assert run(app, "mailbox", "delete", "gone@ops.example", "--yes").exit_code == 0
    db.execute("UPDATE portal_mailbox_removals SET purge_after = now() - interval '1 day'")

    purge_config = mail_stack.purge_config
    info = purge_config.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640 and info.st_uid == 0
    assert info.st_gid == __import__("grp").getgrnam(stack.VMAIL).gr_gid
    # vmail cannot read the portal's own settings: a clear line, no traceback.
    code, output = run_as_vmail(mail_stack.portal_config, "mailbox", "purge")
    assert code == 1 and "cannot read: Permission denied" in output and "purge.toml" in output
    assert maildir.exists()

    code, output = run_as_vmail(purge_config, "mailbox", "purge")
    assert code == 0, output
    assert "purged gone@ops.example" in output
    assert not maildir.exists()
    removal = db.execute("SELECT purged_at FROM portal_mailbox_removals WHERE email = 'gone@ops.example'").fetchone()
    assert removal["purged_at"] is not None
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log WHERE action = 'mailbox.purge'"
                      " AND target = 'gone@ops.example'").fetchone()["n"] == 1

    # The purge's role reads no mailbox, password or alias, and cannot change a route.
    with psycopg.connect(stack.database_url(mail_stack.db_name, stack.DB_PURGER), autocommit=True) as purger:
        for statement in ("SELECT password FROM virtual_users", "SELECT * FROM virtual_aliases",
                          "UPDATE virtual_users SET active = false", "SELECT * FROM portal_sessions",
                          "DELETE FROM portal_audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                purger.execute(statement)


def test_the_readme_grants_the_purge_what_the_stack_grants():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for line in stack.PURGER_GRANTS.strip().splitlines():
        assert line.format(purger="mailpurge") in readme, line


def test_a_configuration_error_is_one_line_not_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_CONFIG"] = str(tmp_path / "missing.toml")
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "mailbox", "list"], cwd=Path(
        __file__).resolve().parent.parent, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"mail portal: configuration error: PORTAL_CONFIG names"
                                     f" '{tmp_path / 'missing.toml'}', which does not exist")


def test_doctor_fails_when_dovecot_caches_logins(app_factory, db, mail_stack, mail_data, tmp_path):
    # The stack's Dovecot configuration with the auth cache switched on, read through doveconf -c.
    cached = tmp_path / "dovecot.conf"
    cached.write_text(mail_stack.dovecot_conf.read_text() + "\nauth_cache_size = 10M\n")
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True)
    result = doctor(app, mail_stack, dovecot_config=str(cached))
    assert result.exit_code == 1
    assert "FAIL  auth cache: Dovecot's auth cache is on (auth_cache_size = 10" in result.output
    assert "fix: set auth_cache_size = 0" in result.output


def test_doctor_fails_when_dovecot_drops_the_domain_for_lmtp(app_factory, db, mail_stack, mail_data, tmp_path):
    # Debian 13's conf.d/20-lmtp.conf, meant for system users: LMTP then looks up "alice", not the mailbox.
    local_only = "%{user | username | lower}" if stack.dovecot_series() == "2.4" else "%Ln"
    stripped = tmp_path / "dovecot.conf"
    stripped.write_text(mail_stack.dovecot_conf.read_text()
                        + f"\nprotocol lmtp {{\n  auth_username_format = {local_only}\n}}\n")
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True)
    result = doctor(app, mail_stack, dovecot_config=str(stripped))
    assert result.exit_code == 1
    assert f"FAIL  user names: auth_username_format drops the domain for lmtp ({local_only})" in result.output
    assert "550 User doesn't exist" in result.output and "conf.d/20-lmtp.conf" in result.output
    # The stack's own configuration keeps the whole address.
    assert "ok    user names: Dovecot looks mailboxes up by their full address" in doctor(app, mail_stack).output


def test_doctor_fails_when_lmtp_does_not_run_sieve(app_factory, db, mail_stack, mail_data, tmp_path):
    # A protocol lmtp section of a later file that sets the plugins without sieve: replies are saved, never sent.
    without = ("protocol lmtp {\n  mail_plugins {\n    sieve = no\n  }\n}\n" if stack.dovecot_series() == "2.4"
               else "protocol lmtp {\n  mail_plugins = quota quota_clone\n}\n")
    stripped = tmp_path / "dovecot.conf"
    stripped.write_text(mail_stack.dovecot_conf.read_text() + "\n" + without)
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True)
    result = doctor(app, mail_stack, dovecot_config=str(stripped))
    assert result.exit_code == 1
    assert "FAIL  mail filters: LMTP does not load the sieve plugin" in result.output
    assert "dovecot-sieve" in result.output


def test_doctor_fails_without_the_quota_warning_hook(app_factory, db, mail_stack, mail_data, tmp_path):
    # Copies of the stack's main file and conf.d/, the 99 file without the service, or with a script that cannot run.
    conf_dir = mail_stack.dovecot_conf.parent
    shutil.copytree(conf_dir / "conf.d", tmp_path / "conf.d")
    (tmp_path / "dovecot.conf").write_text(
        mail_stack.dovecot_conf.read_text().replace(f"{conf_dir}/conf.d/", f"{tmp_path}/conf.d/"))
    ours = (conf_dir / "conf.d" / "99-mail-portal.conf").read_text()
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True)

    (tmp_path / "conf.d" / "99-mail-portal.conf").write_text(
        re.sub(r"(?ms)^service quota-warning \{.*?^\}\n", "", ours))
    result = doctor(app, mail_stack, dovecot_config=str(tmp_path / "dovecot.conf"))
    assert result.exit_code == 1
    assert "FAIL  quota warnings: Dovecot has no quota-warning service: users are not warned" in result.output
    assert "mail-portal-quota-warning.sh from flask --app app config render" in result.output

    script = tmp_path / "mail-portal-quota-warning.sh"
    shutil.copy(conf_dir / "mail-portal-quota-warning.sh", script)
    script.chmod(0o644)
    (tmp_path / "conf.d" / "99-mail-portal.conf").write_text(
        ours.replace(str(conf_dir / "mail-portal-quota-warning.sh"), str(script)))
    result = doctor(app, mail_stack, dovecot_config=str(tmp_path / "dovecot.conf"))
    assert result.exit_code == 1
    assert f"FAIL  quota warnings: {script}, which Dovecot's quota-warning service runs, is not executable" in (
        result.output)
    script.chmod(0o755)
    result = doctor(app, mail_stack, dovecot_config=str(tmp_path / "dovecot.conf"))
    assert f"ok    quota warnings: Dovecot runs {script} as root at 80 % and 95 %" in result.output

    # A service user that cannot read the settings the script names (the stack's portal.toml is root's only).
    assert ours.count("\n  user = root\n") == 1
    (tmp_path / "conf.d" / "99-mail-portal.conf").write_text(
        ours.replace(str(conf_dir / "mail-portal-quota-warning.sh"), str(script)).replace(
            "\n  user = root\n", f"\n  user = {stack.VMAIL}\n"))
    result = doctor(app, mail_stack, dovecot_config=str(tmp_path / "dovecot.conf"))
    assert result.exit_code == 1
    assert (f"FAIL  quota warnings: {script} runs the portal as {stack.VMAIL}, but {mail_stack.portal_config} is not"
            f" readable by {stack.VMAIL} (mode 600)") in result.output
    assert "root:mail-portal, mode 0640" in result.output


def test_doctor_finds_scripts_active_at_the_old_place(app_factory, db, mail_stack, mail_data):
    # A server that ran Sieve with Debian's default before: its active links no longer count.
    home = mail_stack.mail_root / "ops.example" / "known"
    (home / "sieve").mkdir(parents=True, exist_ok=True)
    (home / "sieve" / "roundcube.sieve").write_text("keep;\n")
    (home / ".dovecot.sieve").symlink_to("sieve/roundcube.sieve")
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True)
    result = doctor(app, mail_stack)
    assert result.exit_code == 1
    assert "FAIL  old sieve scripts: 1 mailbox(es) have an active Sieve script at ~/.dovecot.sieve" in result.output
    assert "sieve-active" in result.output


@pytest.mark.parametrize("series", ["2.3", "2.4"])
def test_render_writes_the_same_files_for_either_dovecot(app, mail_stack, tmp_path, series):
    reader = stack.db_context(mail_stack.db_name)
    url = f"postgresql://{reader['db_user']}:{reader['db_password']}@{reader['db_host']}:{reader['db_port']}/x"
    result = run(app, "config", "render", str(tmp_path), "--database-url", url, "--dovecot", series)
    assert result.exit_code == 0, result.output
    assert f"for Dovecot {series}" in result.output and reader["db_password"] not in result.output
    dovecot = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
               for p in (tmp_path / "dovecot").rglob("*") if p.is_file()}
    slot_files = {f"dovecot/dovecot-sql-app-password-{slot}.conf.ext" for slot in range(1, 9)}
    assert set(dovecot) == {"dovecot/dovecot-sql.conf.ext", "dovecot/dovecot-dict-quota.conf.ext",
                            "dovecot/conf.d/auth-sql.conf.ext", "dovecot/conf.d/99-mail-portal.conf",
                            "dovecot/mail-portal-doveadm.conf.ext", "dovecot/mail-portal-quota-warning.sh",
                            *(slot_files if series == "2.3" else ())}
    # App passwords: one passdb per slot, each for its services, and the main password refused to mail clients
    # that must use them, but on the portal's own listener (the app's imap_port, the stack's portal port).
    passdbs = "\n".join((tmp_path / name).read_text() for name in dovecot if "sql" in name)
    assert all(f"a.slot = {slot} " in passdbs for slot in range(1, 9)) and "portal_app_passwords" in passdbs
    port = app.config["IMAP_PORT"]
    # ...and only from the portal's own addresses (--portal-networks, its default: loopback).
    if series == "2.4":
        assert f"'%{{real_local_port}}' = '{port}'" in passdbs and "'%{protocol}' = ANY (a.services)" in passdbs
        assert "NULLIF('%{real_remote_ip}', '')::inet <<= ANY ('{127.0.0.1/32,::1/128}'::inet[])" in passdbs
    else:
        assert f"'%{{real_lport}}' = '{port}'" in passdbs and "'%s' = ANY (a.services)" in passdbs
        assert "NULLIF('%{real_rip}', '')::inet <<= ANY ('{127.0.0.1/32,::1/128}'::inet[])" in passdbs
    assert "mail_clients_use_app_passwords" in passdbs and "require_app_passwords" in passdbs
    assert f"port = {port}" in (tmp_path / "dovecot" / "conf.d" / "99-mail-portal.conf").read_text()
    text = "\n".join(line for name in dovecot for line in (tmp_path / name).read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    sql = (tmp_path / "dovecot" / "dovecot-sql.conf.ext").read_text()
    assert "password_must_change" in sql and "u.active AND d.active" in sql
    if series == "2.4":
        assert "%{user}" in sql and not dovecotconf.OLD_VARIABLE.search(text)
        assert "quota_storage_grace = 0" in text and "value_field bytes {" in text
        assert dovecot["dovecot/dovecot-dict-quota.conf.ext"] == 0o600
    else:
        assert "'%u'" in sql and "quota_rule" in text
        assert dovecot["dovecot/dovecot-dict-quota.conf.ext"] == 0o640
