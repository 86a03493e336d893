"""Two portal instances on one database, as behind a load balancer: nothing that matters lives in one of them."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import make_mailbox

PASSWORD = "a long enough test password 18"
NEW = "copper meadow lantern 77 orbit"


@pytest.fixture
def pair(app_factory, db):
    """Two apps with their own pools, as two gunicorn hosts would have, sharing the secret key and the database."""
    return app_factory(LOGIN_ACCOUNT_MAX_FAILURES=2), app_factory(LOGIN_ACCOUNT_MAX_FAILURES=2)


def copy_cookies(source, target) -> None:
    """Give ``target`` the browser cookies of ``source``, as a load balancer would pass them on."""
    cookie = source.get_cookie("portal_session")
    target.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)


def test_a_session_works_on_either_and_ends_on_both(pair, db):
    a, b = pair
    make_mailbox(db, "roam@two.example", PASSWORD)
    on_a = make_client(a)
    assert sign_in(on_a, "roam@two.example", PASSWORD).status_code == 302
    on_b = make_client(b)
    copy_cookies(on_a, on_b)
    assert on_b.get("/").status_code == 200  # no sticky sessions needed

    second = make_client(b)
    assert sign_in(second, "roam@two.example", PASSWORD).status_code == 302
    token = csrf_token(on_a, "/account/password")
    response = on_a.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                    "new_password": NEW, "confirm_password": NEW})
    assert response.status_code == 302
    # The change on A ended the sessions made on B, and the copy of A's old one, at once.
    assert second.get("/").headers["Location"].startswith("/auth/login")
    assert on_b.get("/").headers["Location"].startswith("/auth/login")
    # Signing out on B ends A's new session too.
    copy_cookies(on_a, on_b)
    token = csrf_token(on_b, "/account/password")
    on_b.post("/auth/logout", data={"csrf_token": token})
    assert on_a.get("/").headers["Location"].startswith("/auth/login")


def test_failed_sign_ins_add_up_across_instances(pair, db):
    a, b = pair
    make_mailbox(db, "target@two.example", PASSWORD)
    guesser = new_client_ip()
    assert sign_in(make_client(a, guesser), "target@two.example", "wrong password 1").status_code == 200
    assert sign_in(make_client(b, guesser), "target@two.example", "wrong password 2").status_code == 200
    # Two failures from one client, one on each instance: that client is locked out of the account on both,
    # even with the right password; the owner elsewhere is not.
    assert sign_in(make_client(a, guesser), "target@two.example", PASSWORD).status_code == 429
    assert sign_in(make_client(b, guesser), "target@two.example", PASSWORD).status_code == 429
    assert sign_in(make_client(b), "target@two.example", PASSWORD).status_code == 302


def test_a_domain_limit_holds_when_both_create_at_once(pair, db):
    a, b = pair
    make_mailbox(db, "boss@limit.example", PASSWORD)
    db.execute("UPDATE virtual_domains SET max_mailboxes = 4 WHERE name = 'limit.example'")  # boss + 3
    for app in pair:
        app.test_cli_runner().invoke(args=["admin", "grant", "domain-admin", "boss@limit.example", "limit.example"])
    clients = []
    for n in range(10):
        client = make_client(a if n % 2 else b)
        assert sign_in(client, "boss@limit.example", PASSWORD).status_code == 302
        clients.append((client, csrf_token(client, "/admin/domains/limit.example/mailboxes/new")))
    statuses, start = [], threading.Barrier(len(clients))

    def create(n: int) -> None:
        client, token = clients[n]
        start.wait()
        response = client.post("/admin/domains/limit.example/mailboxes/new",
                               data={"csrf_token": token, "local_part": f"new{n}", "generate": "y", "quota": ""})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 3 + [409] * 7
    count = db.execute("SELECT count(*) AS n FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id"
                       " WHERE d.name = 'limit.example'").fetchone()["n"]
    assert count == 4
