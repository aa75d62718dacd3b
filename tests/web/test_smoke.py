"""Pages render; the navigation marks the current page; the purchases page has one name."""

from __future__ import annotations

import re

from tests.helpers import Browser


def test_public_pages_render(client, catalog):
    for path in ("/", "/pricing", "/terms", "/signup", "/login", "/password/forgot"):
        response = client.get(path)
        assert response.status_code == 200, path


# --- Issue 10 item 15: the current page in the navigation; one name for the purchases page ----

NAV = re.compile(r'<nav class="container site-nav".*?</nav>', re.S)


def current_in_nav(html: str) -> list[str]:
    """The labels of the main navigation's links marked as the current page."""
    nav = NAV.search(html).group(0)
    return [
        re.sub(r"<[^>]+>", "", label).strip()
        for label in re.findall(r'<a [^>]*aria-current="page"[^>]*>(.*?)</a>', nav, re.S)
    ]


def test_the_current_page_is_marked_in_the_navigation(app, client, catalog, make_account):
    for path, label in (
        ("/pricing", "Pricing"),
        ("/login", "Sign in"),
        ("/signup", "Create account"),
    ):
        assert current_in_nav(client.get(path).get_data(as_text=True)) == [label], path
    assert current_in_nav(client.get("/terms").get_data(as_text=True)) == []
    make_account("nav@example.com", admin=True)
    browser = Browser(client)
    browser.login("nav@example.com")
    for path, label in (
        ("/dashboard", "Dashboard"),
        ("/keys", "API keys"),
        ("/keys/refusals", "API keys"),
        ("/usage", "Usage"),
        ("/credits", "Credits"),
        ("/credits/history", "Credits"),
        ("/credits/refunds/new", "Credits"),
        ("/account/password", "Change password"),
        ("/account/close", "Close account"),
        ("/admin/accounts", "Admin"),
        ("/admin/refunds", "Admin"),
        ("/pricing", "Pricing"),
    ):
        response = browser.get(path)
        assert response.status_code == 200, path
        assert current_in_nav(response.get_data(as_text=True)) == [label], path


def test_the_purchases_page_has_one_name(app, client, catalog, make_account):
    from tests.web.purchases import credited_purchase

    account_id = make_account("buyer@example.com")
    purchase_id = credited_purchase(app, account_id, 1000)
    browser = Browser(client)
    browser.login("buyer@example.com")
    history = browser.get("/credits/history").get_data(as_text=True)
    assert "<title>Purchases · OneKey</title>" in history
    assert "<h1>Purchases</h1>" in history
    names = set()
    for path in (
        "/dashboard",
        "/credits",
        f"/credits/{purchase_id}",
        "/credits/refunds/new",
        f"/credits/refunds/new?purchase={purchase_id}",
    ):
        page = browser.get(path).get_data(as_text=True)
        links = re.findall(r'<a href="/credits/history"[^>]*>(.*?)</a>', page, re.S)
        assert links, f"{path} does not link to the purchases page"
        names.update(re.sub(r"<[^>]+>", "", link).strip() for link in links)
    # A form's "Cancel" goes back there too; every link that names the page calls it Purchases.
    assert names - {"Cancel"} == {"Purchases"}
