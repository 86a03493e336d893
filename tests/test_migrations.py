"""Migrations on an empty database, adoption of a guide-built database, and refusal on conflicts."""

from __future__ import annotations

import subprocess
import threading
import uuid
from pathlib import Path

import guide_server
import psycopg
import pytest
import stack
from psycopg import sql
from psycopg.rows import dict_row

from portal import migrate
from tests.mail import imap_login

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ADD_ALIAS = "INSERT INTO virtual_aliases (domain_id, source, destination) VALUES "
GUIDE_TABLES = ("virtual_domains", "virtual_users", "virtual_aliases")
GUIDE_COLUMNS = {
    "virtual_domains": ("id", "name"),
    "virtual_users": ("id", "domain_id", "password", "email"),
    "virtual_aliases": ("id", "domain_id", "source", "destination"),
}


@pytest.fixture
def scratch_database(mail_stack):
    """An empty database of its own, dropped afterwards; yields its name."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    stack.ensure_database(name, fresh=True)
    yield name
    stack.drop_database(name)


def connect(name: str) -> psycopg.Connection:
    return psycopg.connect(stack.database_url(name), autocommit=True, row_factory=dict_row)


def schema_snapshot(conn) -> dict:
    """Columns, constraints, indexes and triggers of the public schema."""
    columns = conn.execute(
        """
        SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default
          FROM information_schema.columns WHERE table_schema = 'public'
         ORDER BY table_name, column_name
        """
    ).fetchall()
    constraints = conn.execute(
        """
        SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2
        """
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()
    triggers = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
    ).fetchall()
    return {"columns": columns, "constraints": constraints, "indexes": indexes, "triggers": triggers}


def guide_rows(conn) -> dict:
    """Every row of the guide's tables, guide columns only, in id order."""
    rows = {}
    for table, columns in GUIDE_COLUMNS.items():
        # Table and column names come from the constant above, never from input.
        query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
        )
        rows[table] = conn.execute(query).fetchall()
    return rows


def doveadm_sha512_crypt(password: str) -> str:
    """Hash as the guide's operators do, with the {SHA512-CRYPT} prefix stripped to fit VARCHAR(106)."""
    out = subprocess.run(
        ["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", password], capture_output=True, text=True, check=True
    ).stdout.strip()
    bare = out.removeprefix("{SHA512-CRYPT}")
    assert len(bare) == 106
    return bare


GUIDE_USERS = {"anna@guide.example": "anna's old password", "ben@guide.example": "Ben = 2 quotes \" '"}


def build_guide_database(conn) -> None:
    """Create the guide's tables with its DDL, verbatim, and fill them as its operators would."""
    conn.execute((FIXTURES / "guide_schema.sql").read_text())
    with conn.transaction():
        conn.execute("INSERT INTO virtual_domains (name) VALUES ('guide.example'), ('other.example')")
        for address, password in GUIDE_USERS.items():
            conn.execute(
                "INSERT INTO virtual_users (domain_id, password, email) VALUES (1, %s, %s)",
                (doveadm_sha512_crypt(password), address),
            )
        conn.execute(
            "INSERT INTO virtual_users (domain_id, password, email) VALUES (2, %s, 'carl@other.example')",
            (doveadm_sha512_crypt("carl"),),
        )
        conn.execute(
            """
            INSERT INTO virtual_aliases (domain_id, source, destination) VALUES
                (1, 'info@guide.example', 'anna@guide.example'),
                (1, 'info@guide.example', 'ben@guide.example'),
                (1, 'sales@guide.example', 'carl@other.example'),
                (2, '@other.example', 'carl@other.example')
            """
        )


def postfix_answers(map_dir: Path, keys: list[str]) -> dict:
    """Ask each map file for each key with postmap -q, as Postfix itself would."""
    answers = {}
    for map_file in sorted(map_dir.glob("*.cf")):
        for key in keys:
            result = subprocess.run(
                ["postmap", "-q", key, f"pgsql:{map_file}"], capture_output=True, text=True
            )
            assert result.returncode in (0, 1), result.stderr  # 1 means "not found"
            assert "warning" not in result.stderr, result.stderr
            answers[(map_file.name, key)] = result.stdout.strip()
    return answers


def render_guide_postfix_maps(target: Path, db_name: str) -> Path:
    secrets = stack.stack_secrets()
    target.mkdir(parents=True, exist_ok=True)
    for source in (FIXTURES / "guide_postfix").glob("*.cf"):
        text = source.read_text().format(
            db_user=stack.DB_MAIL_READER,
            db_password=secrets["reader_password"],
            db_hosts=f"inet:{stack.PG_HOST}:{stack.PG_PORT}",
            db_name=db_name,
        )
        (target / source.name).write_text(text)
    return target


# --- an empty database -----------------------------------------------------------------


def test_upgrade_on_empty_database_twice(scratch_database):
    with connect(scratch_database) as conn:
        applied = migrate.upgrade(conn, report=lambda _: None)
        assert [m.version for m in applied] == [m.version for m in migrate.available_migrations()]
        assert migrate.pending_migrations(conn) == []
        first = schema_snapshot(conn)
        for table in GUIDE_TABLES + ("portal_roles", "portal_audit_log", "portal_schema_migrations"):
            assert conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (table,)).fetchone()["ok"], table

        assert migrate.upgrade(conn, report=lambda _: None) == []
        assert schema_snapshot(conn) == first
        versions = conn.execute("SELECT version FROM portal_schema_migrations ORDER BY 1").fetchall()
        assert [r["version"] for r in versions] == [m.version for m in migrate.available_migrations()]


def test_required_indexes_and_constraints_exist(scratch_database):
    with connect(scratch_database) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        indexes = {r["indexname"]: r["indexdef"] for r in schema_snapshot(conn)["indexes"]}
    # Postfix's alias lookup is "WHERE source = ..." : an index leading with source serves it.
    assert "(source, destination)" in indexes["virtual_aliases_source_destination_key"]
    assert "UNIQUE" in indexes["virtual_aliases_source_destination_key"]
    assert "(domain_id, source COLLATE \"C\", id)" in indexes["virtual_aliases_domain_source_idx"]
    assert "(domain_id, email COLLATE \"C\")" in indexes["virtual_users_domain_email_idx"]
    # Substring search within a domain: trigram indexes that also hold the domain.
    assert "gin (domain_id, email gin_trgm_ops)" in indexes["virtual_users_domain_email_trgm_idx"]
    assert "gin (domain_id, source gin_trgm_ops)" in indexes["virtual_aliases_domain_source_trgm_idx"]
    assert "UNIQUE" in indexes["virtual_domains_name_key"]
    assert "UNIQUE" in indexes["virtual_users_email_key"]


def test_concurrent_upgrades_apply_each_migration_once(scratch_database):
    errors = []

    def run_upgrade():
        try:
            with connect(scratch_database) as conn:
                migrate.upgrade(conn, report=lambda _: None)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run_upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with connect(scratch_database) as conn:
        count = conn.execute("SELECT count(*) AS n FROM portal_schema_migrations").fetchone()["n"]
    assert count == len(migrate.available_migrations())


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("INSERT INTO virtual_domains (name) VALUES ('Mixed.Example')", "virtual_domains_name_lower"),
        ("INSERT INTO virtual_domains (name) VALUES ('one.example')", "virtual_domains_name_key"),
        (
            "INSERT INTO virtual_users (domain_id, password, email) VALUES (1, 'x', 'Anna@one.example')",
            "virtual_users_email_lower",
        ),
        (
            "INSERT INTO virtual_users (domain_id, password, email) VALUES (1, '', 'new@one.example')",
            "virtual_users_password_set",
        ),
        (
            ADD_ALIAS + "(1, 'a@one.example', 'B@one.example')",
            "virtual_aliases_destination_lower",
        ),
        (
            ADD_ALIAS + "(1, 'a@one.example', 'b@one.example')",
            "virtual_aliases_source_destination_key",
        ),
    ],
)
def test_database_enforces_canonical_and_unique_keys(scratch_database, statement, constraint):
    with connect(scratch_database) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        conn.execute("INSERT INTO virtual_domains (name) VALUES ('one.example')")
        conn.execute(ADD_ALIAS + "(1, 'a@one.example', 'b@one.example')")
        with pytest.raises(psycopg.errors.IntegrityError) as caught:
            conn.execute(statement)
        assert caught.value.diag.constraint_name == constraint


def test_updated_at_follows_updates(scratch_database):
    with connect(scratch_database) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        conn.execute("INSERT INTO virtual_domains (name) VALUES ('one.example')")
        before = conn.execute("SELECT updated_at FROM virtual_domains").fetchone()["updated_at"]
        conn.execute("UPDATE virtual_domains SET active = false")
        after = conn.execute("SELECT updated_at FROM virtual_domains").fetchone()["updated_at"]
    assert after > before


# --- adopting a guide-built database -----------------------------------------------------------


def test_adopts_guide_database_without_changing_mail_flow(scratch_database, mail_stack, tmp_path):
    with connect(scratch_database) as conn:
        build_guide_database(conn)
        stack.grant_mail_reader(conn)
        rows_before = guide_rows(conn)
    maps = render_guide_postfix_maps(tmp_path / "guide-maps", scratch_database)
    keys = [
        "anna@guide.example", "ben@guide.example", "carl@other.example", "info@guide.example",
        "sales@guide.example", "@other.example", "guide.example", "other.example", "nobody@guide.example",
        "@guide.example", "missing.example",
    ]
    answers_before = postfix_answers(maps, keys)
    assert answers_before[("pgsql-aliases.cf", "info@guide.example")] == "anna@guide.example,ben@guide.example"
    assert answers_before[("pgsql-users.cf", "anna@guide.example")] == "anna@guide.example"
    assert answers_before[("pgsql-domains.cf", "guide.example")] == "1"

    with connect(scratch_database) as conn:
        applied = migrate.upgrade(conn, report=lambda _: None)
        assert len(applied) == len(migrate.available_migrations())
        assert guide_rows(conn) == rows_before
        state = conn.execute("SELECT bool_and(active) AS active, count(*) AS n FROM virtual_users").fetchone()
        assert state == {"active": True, "n": 3}

    assert postfix_answers(maps, keys) == answers_before

    # The guide's Dovecot password_query, verbatim, still authenticates a guide user over IMAP.
    guide_dovecot = stack.Instance("guide", scratch_database, imap_port=12143, lmtp_port=12024, smtp_port=12025)
    sql_conf = guide_server.dovecot_sql(stack.dovecot_series(), **stack.db_context(scratch_database),
                                      mail_root=str(guide_dovecot.mail_root))
    stack.render_dovecot(guide_dovecot, sql_conf=sql_conf, static_userdb=True)
    stack.start_dovecot(guide_dovecot, restart=True)
    try:
        for address, password in GUIDE_USERS.items():
            client = imap_login(guide_dovecot.imap_port, address, password)
            client.logout()
        with pytest.raises(Exception, match="AUTHENTICATIONFAILED"):
            imap_login(guide_dovecot.imap_port, "anna@guide.example", "wrong", client_ip="192.0.2.10")
    finally:
        stack.stop_dovecot(guide_dovecot)


def test_shipped_maps_answer_like_the_guide_for_adopted_rows(scratch_database, mail_stack, tmp_path):
    """The portal's own map files give the same routing for what the guide already had."""
    from portal import mailconfig

    with connect(scratch_database) as conn:
        build_guide_database(conn)
        migrate.upgrade(conn, report=lambda _: None)
        stack.grant_mail_reader(conn)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in mailconfig.POSTFIX_MAPS:
        (shipped / name).write_text(mailconfig.render(f"postfix/{name}", **stack.db_context(scratch_database)))
    answers = postfix_answers(
        shipped, ["anna@guide.example", "info@guide.example", "guide.example", "nobody@guide.example"]
    )
    assert answers[("pgsql-domains.cf", "guide.example")] == "1"
    assert answers[("pgsql-users.cf", "anna@guide.example")] == "anna@guide.example"
    assert answers[("pgsql-aliases.cf", "info@guide.example")] == "anna@guide.example,ben@guide.example"
    # A mailbox answers with itself, so the @other.example catch-all cannot swallow it.
    assert answers[("pgsql-aliases.cf", "anna@guide.example")] == "anna@guide.example"
    assert answers[("pgsql-users.cf", "nobody@guide.example")] == ""


# --- conflicting data -----------------------------------------------------------------------------


CONFLICTS = [
    (
        "INSERT INTO virtual_domains (name) VALUES ('Guide.Example')",
        ["Domains that differ only in case", "name='Guide.Example'", "name='guide.example'"],
    ),
    (
        "INSERT INTO virtual_users (domain_id, password, email) VALUES (1, 'x', 'Anna@guide.example')",
        ["Mailboxes that differ only in case", "email='Anna@guide.example'", "email='anna@guide.example'"],
    ),
    (
        ADD_ALIAS + "(1, 'info@guide.example', 'anna@guide.example')",
        ["Aliases repeated", "source='info@guide.example' destination='anna@guide.example'"],
    ),
    (
        ADD_ALIAS + "(1, 'Sales@guide.example', 'x@guide.example')",
        ["not a lower-case address", "source='Sales@guide.example'"],
    ),
    (
        "INSERT INTO virtual_users (domain_id, password, email) VALUES (1, '', 'empty@guide.example')",
        ["empty password", "email='empty@guide.example'"],
    ),
]


@pytest.mark.parametrize(("conflict", "expected"), CONFLICTS)
def test_conflicting_rows_stop_the_upgrade_and_change_nothing(scratch_database, conflict, expected):
    with connect(scratch_database) as conn:
        build_guide_database(conn)
        conn.execute(conflict)
        rows_before = guide_rows(conn)
        schema_before = schema_snapshot(conn)

        with pytest.raises(migrate.MigrationError) as caught:
            migrate.upgrade(conn, report=lambda _: None)

        report = str(caught.value)
        for fragment in expected:
            assert fragment in report
        assert "nothing was changed" in report
        assert guide_rows(conn) == rows_before
        assert schema_snapshot(conn) == schema_before
        assert conn.execute("SELECT to_regclass('portal_schema_migrations') AS t").fetchone()["t"] is None


def test_cli_upgrade_reports_conflicts_and_exits_non_zero(scratch_database, app_factory):
    with connect(scratch_database) as conn:
        build_guide_database(conn)
        conn.execute("INSERT INTO virtual_domains (name) VALUES ('GUIDE.example')")
    app = app_factory(DATABASE_URL=stack.database_url(scratch_database))
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code != 0
    assert "virtual_domains id=3 name='GUIDE.example'" in result.output
    assert "virtual_domains id=1 name='guide.example'" in result.output
    assert "The database was not changed." in result.output
    assert "Traceback" not in result.output


def test_cli_upgrade_then_status(scratch_database, app_factory):
    app = app_factory(DATABASE_URL=stack.database_url(scratch_database))
    runner = app.test_cli_runner()
    status = runner.invoke(args=["db", "status"])
    assert status.exit_code == 1 and "pending: 0001_guide_tables" in status.output
    first = runner.invoke(args=["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"database upgraded to version {migrate.latest_version()}" in first.output
    second = runner.invoke(args=["db", "upgrade"])
    assert second.exit_code == 0 and "nothing to do" in second.output
    assert runner.invoke(args=["db", "status"]).exit_code == 0


def test_cli_upgrade_explains_an_unreachable_database(app_factory):
    app = app_factory(DATABASE_URL="postgresql://nobody:x@127.0.0.1:1/none")
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code != 0
    assert "cannot connect to the database" in result.output
    assert "Traceback" not in result.output
