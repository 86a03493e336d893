"""SQL for installing the portal on a mail server: what the Postfix/Dovecot role may read and write."""

from __future__ import annotations

from psycopg import sql


def grant_mail_reader(conn, role: str) -> None:
    """Let the mail role read what the portal's queries read, and write the usage Dovecot copies.

    Granted by the tables' owner (the portal), before the new queries are
    installed: the role keeps reading throughout (README, Production, step 3)."""
    reader = sql.Identifier(role)
    with conn.transaction():
        for template in _MAIL_READER_GRANTS:
            statement = template.format(reader=reader)
            conn.execute(statement)


_MAIL_READER_GRANTS = (
    sql.SQL("GRANT SELECT ON virtual_domains, virtual_users, virtual_aliases, portal_mailbox_quota,"
            " portal_alias_domains, portal_send_as, portal_app_passwords TO {reader}"),
    # Of the users' settings only whether mail clients must use app passwords (not recovery addresses).
    sql.SQL("GRANT SELECT (mailbox_id, mail_clients_use_app_passwords) ON portal_mailbox_settings TO {reader}"),
    sql.SQL("GRANT SELECT, INSERT, UPDATE ON portal_quota_usage TO {reader}"),
)


def probe_addresses(conn) -> dict:
    """An active mailbox and an alias of an active domain with one of its destinations, to look up after installing."""
    mailbox = conn.execute(
        "SELECT u.email FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id"
        " WHERE u.active AND d.active AND NOT u.password_must_change ORDER BY u.id LIMIT 1").fetchone()
    alias = conn.execute(
        "SELECT a.source, a.destination FROM virtual_aliases a JOIN virtual_domains d ON d.id = a.domain_id"
        " WHERE d.active AND a.source <> a.destination AND a.source NOT LIKE '@%%' ORDER BY a.id LIMIT 1").fetchone()
    return {"mailbox": mailbox["email"] if mailbox else None,
            "alias": (alias["source"], alias["destination"]) if alias else None}
