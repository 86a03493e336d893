"""CSV import and export: round trips, every problem reported with its line, all or nothing, real logins."""

from __future__ import annotations

import os
import stat

import pytest
from imapclient.exceptions import LoginError

from portal.passwords import hash_password
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 15"


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def imap_accepts(mail_stack, address, password) -> bool:
    try:
        imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip()).logout()
    except LoginError:
        return False
    return True


def counts(db) -> tuple:
    row = db.execute("SELECT (SELECT count(*) FROM virtual_domains) AS d, (SELECT count(*) FROM virtual_users) AS u,"
                     " (SELECT count(*) FROM virtual_aliases) AS a, (SELECT count(*) FROM portal_audit_log) AS l"
                     ).fetchone()
    return row["d"], row["u"], row["a"], row["l"]


def wipe(db) -> None:
    db.execute("TRUNCATE virtual_aliases, virtual_users, virtual_domains, portal_audit_log, portal_quota_usage,"
               " portal_usage_levels RESTART IDENTITY CASCADE")


@pytest.fixture
def sample(app, db):
    """A bit of everything the export must carry: settings, hash formats, flags, alias kinds."""
    assert run(app, "domain", "add", "one.example", "--max-mailboxes", "10", "--max-quota", "5 GB",
               "--max-personal-aliases", "3").exit_code == 0
    assert run(app, "domain", "add", "two.example", "--disabled", "--no-personal-aliases").exit_code == 0
    rows = [
        ("ann@one.example", hash_password(PASSWORD), True, False, 2 * 1024**3, "Ann"),
        ("ben@one.example", hash_password(PASSWORD)[len("{SHA512-CRYPT}"):], True, True, 0, ""),  # bare, as the guide
        ("cid@two.example", hash_password(PASSWORD, "BLF-CRYPT"), False, False, 0, "Cid, \"the\" =1"),
    ]
    for email, stored, active, must_change, size, name in rows:
        db.execute(
            "INSERT INTO virtual_users (domain_id, email, password, active, password_must_change, quota_bytes,"
            " display_name) SELECT id, %s, %s, %s, %s, %s, %s FROM virtual_domains WHERE name = %s",
            (email, stored, active, must_change, size, name, email.rpartition("@")[2]))
    db.execute("""
        INSERT INTO virtual_aliases (domain_id, source, destination, owner_id)
        SELECT d.id, v.source, v.destination, (SELECT id FROM virtual_users WHERE email = v.owner)
          FROM (VALUES ('one.example', 'sales@one.example', 'ann@one.example', NULL),
                       ('one.example', 'sales@one.example', 'ben@one.example', NULL),
                       ('one.example', '@one.example', 'ann@one.example', NULL),
                       ('one.example', 'ann@one.example', 'ann@one.example', NULL),
                       ('one.example', 'ann@one.example', 'far@remote.example', NULL),
                       ('one.example', 'nick@one.example', 'ann@one.example', 'ann@one.example')
               ) v(domain, source, destination, owner)
          JOIN virtual_domains d ON d.name = v.domain
    """)


def test_export_then_import_into_an_empty_database_gives_the_same_data(app, db, sample, tmp_path, mail_stack):
    first = {}
    for kind in ("domains", "mailboxes", "aliases"):
        path = tmp_path / f"{kind}.csv"
        result = run(app, "export", kind, "-o", str(path))
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        first[kind] = path.read_text()
    assert "'" not in first["mailboxes"].split("\n", 1)[0]
    wipe(db)
    for kind in ("domains", "mailboxes", "aliases"):
        result = run(app, "import", kind, str(tmp_path / f"{kind}.csv"))
        assert result.exit_code == 0, result.output
    for kind in ("domains", "mailboxes", "aliases"):
        again = run(app, "export", kind)
        assert again.exit_code == 0
        assert again.stdout.replace("\r\n", "\n") == first[kind].replace("\r\n", "\n"), kind
    # The hashes came through intact: Dovecot accepts the password, in both formats. Ben's must be changed
    # (someone else knows it): mail clients refuse it, the portal takes it for the forced change.
    assert imap_accepts(mail_stack, "ann@one.example", PASSWORD)
    assert not imap_accepts(mail_stack, "ben@one.example", PASSWORD)
    response = sign_in(make_client(app), "ben@one.example", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/password")
    # One audit row per imported row, by the command line.
    rows = db.execute("SELECT actor, action, count(*) AS n FROM portal_audit_log GROUP BY 1, 2 ORDER BY 2").fetchall()
    assert [(r["actor"], r["action"], r["n"]) for r in rows] == [
        ("cli", "alias.create", 6), ("cli", "domain.create", 2), ("cli", "mailbox.create", 3)]


def test_plain_passwords_are_checked_and_hashed(app, db, tmp_path, mail_stack):
    assert run(app, "domain", "add", "plain.example").exit_code == 0
    path = tmp_path / "m.csv"
    path.write_text("address,password,name\n"
                    f"eve@plain.example,{PASSWORD},Eve\n"
                    f"fay@plain.example,\"{PASSWORD}, with a comma\",\n")
    result = run(app, "import", "mailboxes", str(path))
    assert result.exit_code == 0, result.output
    stored = db.execute("SELECT email, password FROM virtual_users ORDER BY email").fetchall()
    assert all(r["password"].startswith("{SHA512-CRYPT}$6$") for r in stored)
    assert imap_accepts(mail_stack, "eve@plain.example", PASSWORD)
    assert imap_accepts(mail_stack, "fay@plain.example", f"{PASSWORD}, with a comma")
    assert PASSWORD not in str(db.execute("SELECT * FROM portal_audit_log").fetchall())


def test_every_problem_is_reported_with_its_line_and_nothing_is_written(app, db, tmp_path):
    assert run(app, "domain", "add", "p.example", "--max-quota", "1 GB").exit_code == 0
    assert run(app, "mailbox", "add", "taken@p.example", "--generate").exit_code == 0
    before = counts(db)
    path = tmp_path / "m.csv"
    path.write_text(
        "address,password,password_hash,quota_bytes,active\n"
        f"good@p.example,{PASSWORD},,,\n"                       # line 2: fine
        f"not an address,{PASSWORD},,,\n"                        # 3
        f"good@p.example,{PASSWORD},,,\n"                        # 4: twice
        f"x@missing.example,{PASSWORD},,,\n"                     # 5: no such domain
        "y@p.example,,{MD5}abc,,\n"                             # 6: scheme Dovecot may read but we do not write
        f"z@p.example,{PASSWORD},$6$abc$def,,\n"                 # 7: both
        f"taken@p.example,{PASSWORD},,,\n"                       # 8: exists
        f"big@p.example,{PASSWORD},,999999999999,\n"             # 9: above the ceiling
        f"flag@p.example,{PASSWORD},,,maybe\n"                   # 10: not yes or no
        "weak@p.example,password,,,\n"                         # 11: policy (only checked when the rest is fine)
    )
    result = run(app, "import", "mailboxes", str(path))
    assert result.exit_code != 0
    for line in (3, 4, 5, 6, 7, 8, 9, 10):
        assert f"line {line}: " in result.output, (line, result.output)
    assert "line 2: " not in result.output
    assert "nothing imported" in result.output and "Traceback" not in result.output
    assert counts(db) == before


def test_weak_passwords_are_refused_by_line(app, db, tmp_path):
    assert run(app, "domain", "add", "w.example").exit_code == 0
    path = tmp_path / "m.csv"
    path.write_text(f"address,password\nok@w.example,{PASSWORD}\nweak@w.example,password1\n")
    result = run(app, "import", "mailboxes", str(path))
    assert result.exit_code != 0 and "line 3: password:" in result.output
    assert counts(db)[1] == 0


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("domains", "name,colour\nx.example,red\n", "unknown columns: colour"),
    ("mailboxes", "name\nAnn\n", "missing columns: address"),
    ("aliases", "source,destination\nloop1@l.example,loop2@l.example\nloop2@l.example,loop1@l.example\n",
     "would forward back to itself"),
    ("aliases", "source,destination,owner\nnick@l.example,a@l.example,nobody@l.example\n",
     "the owner nobody@l.example is not a mailbox"),
    ("domains", "name\nl.example\n", "l.example exists already"),
    ("domains", "name,max_mailboxes\nn.example,-1\n", "is not a whole number"),
])
def test_bad_files_are_refused_whole(app, db, tmp_path, kind, text, message):
    assert run(app, "domain", "add", "l.example").exit_code == 0
    before = counts(db)
    path = tmp_path / "f.csv"
    path.write_text(text)
    result = run(app, "import", kind, str(path))
    assert result.exit_code != 0 and message in result.output, result.output
    assert counts(db) == before


def test_dry_run_writes_nothing(app, db, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("name\nd1.example\nd2.example\n")
    result = run(app, "import", "domains", str(path), "--dry-run")
    assert result.exit_code == 0 and "2 domains checked" in result.output
    assert counts(db) == (0, 0, 0, 0)


def test_import_from_standard_input(app, db):
    result = run(app, "import", "domains", "-", input="name,active\nstdin.example,no\n")
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT active FROM virtual_domains WHERE name = 'stdin.example'").fetchone()["active"] is False


@pytest.fixture
def site(app, db):
    """A domain with a mailbox that forwards, one without forwarding, an alias, and a personal-address limit."""
    assert run(app, "domain", "add", "r.example", "--max-personal-aliases", "1").exit_code == 0
    assert run(app, "domain", "add", "s.example").exit_code == 0
    for address in ("bob@r.example", "eve@r.example", "sam@s.example"):
        assert run(app, "mailbox", "add", address, "--generate").exit_code == 0
    assert run(app, "alias", "add", "info@r.example", "bob@r.example").exit_code == 0
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT domain_id, email,"
               " 'far@remote.example' FROM virtual_users WHERE email = 'bob@r.example'")


@pytest.mark.parametrize(("text", "message"), [
    ("source,destination\nbob@r.example,attacker@evil.example\n", "bob@r.example has its forwarding set already"),
    ("source,destination\ninfo@r.example,new@r.example\n", "info@r.example is already in use"),
    ("source,destination\nbob+tag@r.example,eve@r.example\n", "may not contain"),
    ("source,destination\nself@r.example,self@r.example\n", "cannot deliver to itself"),
    ("source,destination,owner\nshop@r.example,sam@s.example,sam@s.example\n", "in its owner's domain"),
    ("source,destination,owner\nshop@r.example,bob@r.example,eve@r.example\n", "delivers to its owner only"),
    ("source,destination,owner\nabuse@r.example,eve@r.example,eve@r.example\n", "reserved"),
    ("source,destination,owner\np1@r.example,eve@r.example,eve@r.example\np2@r.example,eve@r.example,eve@r.example\n",
     "more than 1 personal addresses"),
    ("source,destination\nl1@r.example,l2@r.example\nl2@r.example,l1@r.example\n", "would forward back to itself"),
])
def test_alias_import_follows_the_rules_of_the_pages(app, db, site, tmp_path, text, message):
    before = counts(db)
    path = tmp_path / "a.csv"
    path.write_text(text)
    for extra in (["--dry-run"], []):
        result = run(app, "import", "aliases", str(path), *extra)
        assert result.exit_code != 0 and message in result.output, result.output
        assert counts(db) == before


def test_forwarding_of_a_mailbox_without_one_is_imported(app, db, site, tmp_path, mail_stack):
    path = tmp_path / "a.csv"
    path.write_text("source,destination\neve@r.example,eve@r.example\neve@r.example,bob@r.example\n")
    assert run(app, "import", "aliases", str(path), "--dry-run").exit_code == 0
    assert counts(db)[2] == 2  # info -> bob, and bob's own forwarding
    result = run(app, "import", "aliases", str(path))
    assert result.exit_code == 0, result.output
    assert counts(db)[2] == 4


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("domains", "name,max_mailboxes\nbig.example,99999999999\n", "is not a whole number from 0 to 10000000"),
    ("domains", "name,max_quota_bytes\nbig.example,99999999999999999\n", "is not a whole number from 0 to"),
    ("mailboxes", "address,password_hash\n" + "x@r.example," + "$6$" + "a" * 200_000 + "\n", "not CSV"),
])
def test_values_beyond_the_columns_are_refused_by_line(app, db, site, tmp_path, kind, text, message):
    path = tmp_path / "f.csv"
    path.write_text(text)
    result = run(app, "import", kind, str(path))
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, result.output


def test_a_file_that_is_not_utf8_is_refused_with_a_message(app, db, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("name\nd\xe9j\xe0.example\n".encode("latin-1"))
    result = run(app, "import", "domains", str(path))
    assert result.exit_code != 0 and "not UTF-8" in result.output and "Traceback" not in result.output


def test_a_failed_export_keeps_the_earlier_file(app_factory, db, tmp_path):
    target = tmp_path / "mailboxes.csv"
    target.write_text("the earlier export\n")
    broken = app_factory(DATABASE_URL="postgresql://x:x@127.0.0.1:1/x?connect_timeout=2")
    result = broken.test_cli_runner().invoke(args=["export", "mailboxes", "-o", str(target)])
    assert result.exit_code != 0
    assert target.read_text() == "the earlier export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mailboxes.csv"]
