"""Apply the numbered SQL migrations in ``portal/migrations``.

A tiny runner rather than a framework: the portal needs exactly one thing, all
pending files applied in order in a single transaction, so that an upgrade that
stops half-way (for example on rows that conflict with a new constraint) leaves
the database exactly as it found it. Applied versions are kept in
``portal_schema_migrations``; running the upgrade again applies nothing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg.rows import tuple_row

# Any 64-bit number works; it only has to be the same for every portal process.
_UPGRADE_LOCK_KEY = 0x6D61696C706F7274

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


class MigrationError(Exception):
    """The upgrade failed and nothing was changed."""

    def __init__(self, migration: Migration, message: str, detail: str | None, hint: str | None):
        super().__init__(message)
        self.migration = migration
        self.message = message
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        parts = [f"migration {self.migration.version:04d}_{self.migration.name} failed: {self.message}"]
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append(f"Hint: {self.hint}")
        return "\n".join(parts)


@functools.cache
def available_migrations() -> tuple[Migration, ...]:
    """Return the migrations shipped with the package, in order."""
    found = []
    for entry in resources.files("portal.migrations").iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migration files share a version number")
    return tuple(found)


def latest_version() -> int:
    """Return the version the shipped migrations lead to."""
    migrations = available_migrations()
    return migrations[-1].version if migrations else 0


def applied_versions(conn: psycopg.Connection) -> set[int]:
    """Return the versions recorded as applied (empty if the table does not exist)."""
    cur = conn.cursor(row_factory=tuple_row)
    exists = cur.execute("SELECT to_regclass('portal_schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return set()
    return {row[0] for row in cur.execute("SELECT version FROM portal_schema_migrations")}


def pending_migrations(conn: psycopg.Connection) -> list[Migration]:
    """Return the migrations not yet applied to this database."""
    done = applied_versions(conn)
    return [m for m in available_migrations() if m.version not in done]


def upgrade(conn: psycopg.Connection, report=print) -> list[Migration]:
    """Apply every pending migration in one transaction and return those applied.

    Raises :class:`MigrationError` when one fails; the transaction is then rolled
    back, so none of the pending migrations is left applied.
    """
    with conn.transaction():
        # Constraint checks on big tables, or waiting for another upgrade, may take
        # longer than the portal's usual statement timeout.
        conn.execute("SET LOCAL statement_timeout = 0")
        # Two upgrades started at once must not both apply the same files.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK_KEY,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS portal_schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        todo = pending_migrations(conn)
        for migration in todo:
            report(f"applying {migration.version:04d}_{migration.name}")
            try:
                with conn.transaction():
                    conn.execute(migration.sql)
            except psycopg.Error as exc:
                diag = exc.diag
                raise MigrationError(
                    migration,
                    diag.message_primary or str(exc),
                    diag.message_detail,
                    diag.message_hint,
                ) from exc
            conn.execute(
                "INSERT INTO portal_schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
    return todo
