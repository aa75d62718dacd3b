"""Issue 10 item 13: the filter rows (forms with role="search") are drawn as rows of separate
controls, not as Pico's pill-shaped input group: every control has the same rounded corners on all
four sides and no overlap, and focus draws a ring around the focused control only, never the row.

Measured from the computed styles Chromium applies, on every page that has a filter row.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import sign_in_page

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect

FILTER_PAGES = ("/pricing", "/usage", "/keys/refusals", "/admin/accounts")
# Text fields, selects and buttons: a radio or a checkbox (the usage page's "stack by") is round or
# square by design, not part of the row's group.
FIELDS = "input:not([type=radio]):not([type=checkbox]), select, button"
CONTROLS = f"form[role=search] :is({FIELDS}):visible"
SHADOW = re.compile(r"rgba?\(([^)]*)\)[^,]*?(-?[\d.]+)px(?:,|$)")

STYLES = """(form) => {
  const controls = [...form.querySelectorAll('FIELDS')]
    .filter((c) => c.offsetParent !== null);
  const style = (el) => getComputedStyle(el);
  return {
    row: style(form).boxShadow,
    controls: controls.map((c) => ({
      id: c.id,
      focused: c === document.activeElement,
      radii: [style(c).borderTopLeftRadius, style(c).borderTopRightRadius,
              style(c).borderBottomRightRadius, style(c).borderBottomLeftRadius],
      marginLeft: style(c).marginLeft,
      shadow: style(c).boxShadow,
    })),
    // What Pico gives a control outside any group.
    plain: (() => {
      const probe = document.createElement('select');
      document.querySelector('main').append(probe);
      const radius = style(probe).borderTopLeftRadius;
      probe.remove();
      return radius;
    })(),
  };
}""".replace("FIELDS", FIELDS)


def draws_a_ring(shadow: str) -> bool:
    """A box-shadow with a visible spread: a colour not fully transparent and a spread above 0."""
    if shadow == "none":
        return False
    for colour, spread in SHADOW.findall(shadow):
        parts = [p.strip() for p in colour.split(",")]
        alpha = float(parts[3]) if len(parts) == 4 else 1.0
        if alpha > 0 and float(spread) > 0:
            return True
    return False


@pytest.fixture
def signed_in(app, make_account, page):
    from app.extensions import db
    from app.models import Account
    from app.services.keys import create_key

    account_id = make_account("filters@example.com", admin=True)
    with app.app_context():
        create_key(db.session.get(Account, account_id), name="laptop")
        db.session.commit()
    sign_in_page(page, "filters@example.com")
    return page


@pytest.mark.parametrize("path", FILTER_PAGES)
def test_filter_row_controls_have_consistent_corners_and_their_own_focus_ring(signed_in, path):
    page = signed_in
    page.goto(path)
    form = page.locator("form[role=search]")
    expect(form).to_have_count(1)
    styles = form.evaluate(STYLES)
    assert styles["controls"], "the filter row has no visible control"
    for control in styles["controls"]:
        # The same corners on every side, as any control outside a group has: neither square
        # (Pico's inner corners) nor a 5rem pill (its outer ones, and its search inputs).
        assert set(control["radii"]) == {styles["plain"]}, control
        assert control["marginLeft"] == "0px", control
    assert styles["plain"] != "0px"

    for index in range(len(styles["controls"])):
        page.locator(CONTROLS).nth(index).focus()
        page.wait_for_timeout(300)  # Pico's box-shadow transition
        focused = form.evaluate(STYLES)
        assert not draws_a_ring(focused["row"]), focused["row"]
        for control in focused["controls"]:
            assert draws_a_ring(control["shadow"]) == control["focused"], control
