"""PostgreSQL access: one pool per worker process, one connection per request."""

from __future__ import annotations

import os
import select
import threading

import psycopg
from flask import current_app
from flask import g
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from psycopg_pool import PoolTimeout


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached in time."""


class _PoolHolder:
    """Creates the pool on first use in each process, so it never crosses a fork."""

    def __init__(self, config):
        self.config = config
        self.pool: ConnectionPool | None = None
        self.pid: int | None = None
        self._lock = threading.Lock()

    def get(self) -> ConnectionPool:
        pool = self.pool
        if pool is not None and self.pid == os.getpid():
            return pool
        with self._lock:  # threaded workers: one pool per process, not one per thread
            if self.pool is None or self.pid != os.getpid():
                # A pool inherited through fork shares sockets with the parent: never reuse it.
                self.pool = _make_pool(self.config)
                self.pid = os.getpid()
            return self.pool

    def close(self) -> None:
        if self.pool is not None and self.pid == os.getpid():
            self.pool.close()
        self.pool = None


def connection_kwargs(config) -> dict:
    """Return the psycopg connect arguments the portal uses everywhere."""
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "connect_timeout": int(config["DB_CONNECT_TIMEOUT"]),
        "options": f"-c statement_timeout={int(config['DB_STATEMENT_TIMEOUT'])}",
        "application_name": "mail-portal",
    }


def check_pooled_connection(conn: psycopg.Connection) -> None:
    """Ask PostgreSQL whether a pooled connection lives, but only when the server spoke while it sat idle.

    An idle connection receives nothing unless the server is going away: a restart or
    ``pg_terminate_backend`` sends a FATAL message and closes the socket, which makes it
    readable. Only then is a round trip spent (and fails, so the pool drops the connection
    and hands out another); a healthy connection is handed out at no cost, where a ping on
    every checkout cost every request a round trip.
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


def _make_pool(config) -> ConnectionPool:
    return ConnectionPool(
        config["DATABASE_URL"],
        min_size=int(config["DB_POOL_MIN_SIZE"]),
        max_size=int(config["DB_POOL_MAX_SIZE"]),
        timeout=float(config["DB_POOL_TIMEOUT"]),
        kwargs=connection_kwargs(config),
        check=check_pooled_connection,
        # Give up on a dead database quickly instead of backing off for minutes: the
        # pool then grows again on the next request, so it recovers as soon as
        # PostgreSQL is back.
        reconnect_timeout=float(config["DB_POOL_TIMEOUT"]),
        open=True,
        name="portal",
    )


def get_pool(app=None) -> ConnectionPool:
    """Return this process's pool, opening it on first use."""
    app = app or current_app
    return app.extensions["portal_db"].get()


def get_db(timeout: float | None = None) -> psycopg.Connection:
    """Return the request's connection, taken from the pool on first use."""
    if "db" not in g:
        pool = get_pool()
        try:
            g.db = pool.getconn(timeout=timeout)
        except PoolTimeout as exc:
            raise DatabaseUnavailable("no database connection within the time limit") from exc
        g.db_pool = pool
    return g.db


def close_db(exc=None) -> None:
    """Give the request's connection back to the pool."""
    conn = g.pop("db", None)
    pool = g.pop("db_pool", None)
    if conn is None:
        return
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # A request that failed inside a transaction must not leak it to the next one.
        try:
            conn.rollback()
        except psycopg.Error:
            pass
    pool.putconn(conn)


def release_db() -> None:
    """Give the request's connection back before a long wait; the next :func:`get_db` takes one again."""
    close_db()


def connect(config) -> psycopg.Connection:
    """Open a standalone connection (for commands, not requests)."""
    return psycopg.connect(config["DATABASE_URL"], **connection_kwargs(config))


def init_app(app) -> None:
    """Register the pool holder and the per-request teardown."""
    app.extensions["portal_db"] = _PoolHolder(app.config)
    app.teardown_appcontext(close_db)


def close_pool(app) -> None:
    """Close this process's pool (tests and shutdown)."""
    app.extensions["portal_db"].close()
