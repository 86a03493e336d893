"""Admin lists: keyset pages without gaps or overlaps, prefix and substring search, bad input."""

from __future__ import annotations

import re

import pytest

from portal.queries import listing
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox

PASSWORD = "a long enough test password 8"


@pytest.fixture
def root(app, db):
    make_mailbox(db, "root@big.example", PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@big.example"])
    client = make_client(app)
    assert sign_in(client, "root@big.example", PASSWORD).status_code == 302
    return client


@pytest.fixture
def many(db):
    """119 more mailboxes in big.example (120 with root), and a few aliases."""
    domain_id = db.execute("SELECT id FROM virtual_domains WHERE name = 'big.example'").fetchone()["id"]
    with db.transaction():
        db.execute(
            "INSERT INTO virtual_users (domain_id, email, password)"
            " SELECT %s, 'user' || lpad(n::text, 3, '0') || '@big.example', 'x' FROM generate_series(1, 119) n",
            (domain_id,),
        )
        db.execute(
            "INSERT INTO virtual_aliases (domain_id, source, destination) VALUES"
            " (%(d)s, 'sales@big.example', 'user001@big.example'), (%(d)s, 'sales@big.example', 'user002@big.example'),"
            " (%(d)s, 'odd_name@big.example', 'user003@big.example'), (%(d)s, '@big.example', 'root@big.example')",
            {"d": domain_id},
        )
    return domain_id


def addresses(page_html: str) -> list[str]:
    return re.findall(r"<td>(?:<a [^>]*>)?([a-z0-9_.@]+@big\.example)(?:</a>)?</td>", page_html)


def test_pages_cover_every_mailbox_once_in_order(root, many):
    seen = walk(root, "/admin/domains/big.example/mailboxes")
    assert len(seen) == 120 == len(set(seen))
    assert seen == sorted(seen)


def test_prefix_and_substring_search(root, many):
    html = root.get("/admin/domains/big.example/mailboxes?q=USER01&mode=prefix").get_data(as_text=True)
    assert addresses(html) == [f"user01{n}@big.example" for n in range(10)]
    html = root.get("/admin/domains/big.example/mailboxes?q=r11&mode=contains").get_data(as_text=True)
    assert addresses(html) == [f"user11{n}@big.example" for n in range(10)]


def test_like_wildcards_are_taken_literally(root, many):
    html = root.get("/admin/domains/big.example/aliases?q=odd_&mode=prefix").get_data(as_text=True)
    assert "odd_name@big.example" in html
    html = root.get("/admin/domains/big.example/aliases?q=%25&mode=prefix").get_data(as_text=True)
    assert "No aliases match." in html


def test_aliases_are_grouped_with_their_destinations(root, many):
    html = root.get("/admin/domains/big.example/aliases").get_data(as_text=True)
    assert ">sales@big.example</a></td>" in html
    assert "user001@big.example, user002@big.example" in html
    assert "catch-all" in html


@pytest.mark.parametrize(
    ("query", "message"),
    [("?q=ab&mode=contains", "at least 3 characters"), ("?q=a%0Ab", "control characters"),
     ("?q=" + "x" * 300, "at most 254"), ("?mode=regex&q=x", "Not a valid choice")],
)
def test_bad_searches_are_explained(root, many, query, message):
    response = root.get("/admin/domains/big.example/mailboxes" + query)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_bad_cursor_is_refused(root, many):
    assert root.get("/admin/domains/big.example/mailboxes?after=%01x").status_code == 400


def test_domain_counters_follow_every_change(root, many, db):
    def counts():
        page = listing.domains(db, None, listing.Search(), None)
        row = next(r for r in page.rows if r["name"] == "big.example")
        return row["mailboxes"], row["aliases"]

    assert counts() == (120, 4)  # alias rows: sales twice, odd_name, the catch-all
    other = db.execute("INSERT INTO virtual_domains (name) VALUES ('other.example') RETURNING id").fetchone()["id"]
    db.execute("UPDATE virtual_users SET domain_id = %s WHERE email LIKE 'user11%%'", (other,))
    assert counts() == (110, 4)
    db.execute("DELETE FROM virtual_aliases WHERE source = 'sales@big.example'")
    db.execute("DELETE FROM virtual_users WHERE email = 'user001@big.example'")
    assert counts() == (109, 2)
    recount = db.execute(
        "SELECT (SELECT count(*) FROM virtual_users WHERE domain_id = d.id) AS m,"
        " (SELECT count(*) FROM virtual_aliases WHERE domain_id = d.id) AS a, d.mailbox_count, d.alias_count"
        " FROM virtual_domains d"
    ).fetchall()
    assert all(r["m"] == r["mailbox_count"] and r["a"] == r["alias_count"] for r in recount)


def test_domain_list_pages(db):
    with db.transaction():
        db.execute("INSERT INTO virtual_domains (name) SELECT 'd' || lpad(n::text, 3, '0') || '.example'"
                   " FROM generate_series(1, 75) n")
    first = listing.domains(db, None, listing.Search(), None)
    second = listing.domains(db, None, listing.Search(), first.next_after)
    assert len(first.rows) == 50 and len(second.rows) == 25 and second.next_after is None
    assert [r["name"] for r in first.rows + second.rows] == sorted(r["name"] for r in first.rows + second.rows)


def walk(client, url: str) -> list[str]:
    """Follow the Next links from ``url``; the addresses of every page, in order."""
    seen = []
    for _ in range(20):
        response = client.get(url)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        seen += addresses(html)
        match = re.search(r'<a href="([^"]+)">Next', html)
        if not match:
            return seen
        url = match.group(1).replace("&amp;", "&")
    raise AssertionError("more pages than expected")


def test_sorted_newest_first_across_pages_with_equal_times(root, many, db):
    # Three mailboxes share each creation time: the id decides among them, and no page repeats or skips one.
    db.execute("UPDATE virtual_users SET created_at = '2026-01-01'::timestamptz + (id / 3) * interval '1 minute'"
               " WHERE domain_id = %s", (many,))
    expected = [r["email"] for r in db.execute(
        "SELECT email FROM virtual_users WHERE domain_id = %s ORDER BY created_at DESC, id DESC", (many,)
    ).fetchall()]
    assert walk(root, "/admin/domains/big.example/mailboxes?sort=newest") == expected
    assert walk(root, "/admin/domains/big.example/mailboxes?sort=oldest") == expected[::-1]


def test_sorted_z_to_a_with_a_search(root, many):
    seen = walk(root, "/admin/domains/big.example/mailboxes?sort=address-desc&q=user0&mode=prefix")
    assert seen == sorted((f"user{n:03d}@big.example" for n in range(1, 100)), reverse=True)
    aliases_html = root.get("/admin/domains/big.example/aliases?sort=address-desc").get_data(as_text=True)
    assert aliases_html.index("sales@big.example") < aliases_html.index("odd_name@big.example")


def test_domains_by_most_mailboxes(root, many, db):
    with db.transaction():
        db.execute("INSERT INTO virtual_domains (name) SELECT 'd' || n || '.example' FROM generate_series(1, 60) n")
    html = root.get("/admin/domains?sort=mailboxes").get_data(as_text=True)
    first = re.search(r'<td><a href="[^"]+">([a-z0-9.]+)</a></td>', html).group(1)
    assert first == "big.example"
    names = []
    url = "/admin/domains?sort=mailboxes"
    while url:
        html = root.get(url).get_data(as_text=True)
        names += re.findall(r'<td><a href="/admin/domains/[^/]+/mailboxes">([a-z0-9.]+)</a></td>', html)
        match = re.search(r'<a href="([^"]+)">Next', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert len(names) == len(set(names)) == db.execute("SELECT count(*) AS n FROM virtual_domains").fetchone()["n"]


@pytest.mark.parametrize(
    "query",
    ["sort=size", "sort=address;drop", "after=%5B%22x%22%2C1%5D", "sort=newest&after=%5B%22user%22%5D",
     "sort=newest&after=%5B%22not-a-time%22%2C1%5D", "sort=newest&after=%5B%222026-01-01%22%2Ctrue%5D",
     "after=%7B%7D", "after=%5B%22a%5Cu0000%22%5D",
     # Values Python reads but PostgreSQL would not: out of bigint range, week dates, no time zone;
     # and JSON nested deep enough to exhaust the parser.
     "sort=newest&after=%5B%222026-01-01T00:00:00%2B00:00%22%2C99999999999999999999999%5D",
     "sort=newest&after=%5B%222020-W01-1%22%2C1%5D",
     "sort=newest&after=%5B%222020-01-01T00:00:00%22%2C1%5D", "after=" + "%5B" * 3000],
)
def test_unknown_sorts_and_forged_cursors_are_refused(root, many, query):
    response = root.get("/admin/domains/big.example/mailboxes?" + query)
    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_time_offset_postgresql_would_refuse_is_read_as_utc(root, many):
    # Python reads +20:00 and PostgreSQL would not: the moment goes on as UTC, so the page just works.
    response = root.get("/admin/domains/big.example/mailboxes?sort=newest"
                        "&after=%5B%222020-01-01T00:00:00%2B20:00%22%2C1%5D")
    assert response.status_code == 200


def test_the_mailbox_list_shows_usage_as_a_bar_where_there_is_a_limit(root, many, db):
    db.execute("UPDATE virtual_users SET quota_bytes = 1000 WHERE email = 'user001@big.example'")
    db.execute("INSERT INTO portal_quota_usage (email, bytes, messages) VALUES ('user001@big.example', 960, 3),"
               " ('user002@big.example', 500, 1)")
    page = root.get("/admin/domains/big.example/mailboxes?q=user00").get_data(as_text=True)
    bars = re.findall(r'<meter class="usage-mini"[^>]*>', page)
    assert len(bars) == 1  # user002 has no limit: its usage is a figure, with nothing to fill
    assert 'max="1000"' in bars[0] and 'value="960"' in bars[0] and 'high="950"' in bars[0]
    assert 'aria-label="Storage used: 96 percent"' in bars[0]
