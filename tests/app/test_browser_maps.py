"""The Embeddings page in a real browser (Debian's Chromium, Playwright): a single click on one point selects it on
each of the three maps, and the selected conformer (its 2D depiction, its global id, the 3D view) shows."""

from __future__ import annotations

import pytest
from browser_support import shot, viewer_3d, visit, wait_for_plots, wait_idle

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# the screen position of the last point of the last trace of a live Plotly chart (drawn on top), and the global ids
# of every point within 4 px of it (points of one molecule may coincide; a click selects one of them)
POINT_JS = """(k) => {
    const gd = document.querySelectorAll('.js-plotly-plot')[k];
    const L = gd._fullLayout, box = gd.getBoundingClientRect();
    const px = (tr, i) => [box.left + L._size.l + L.xaxis.l2p(tr.x[i]), box.top + L._size.t + L.yaxis.l2p(tr.y[i])];
    const traces = gd._fullData.filter(d => d.visible === true && d.x && d.x.length && d.x[0] !== null);
    const last = traces[traces.length - 1], [x, y] = px(last, last.x.length - 1), near = [];
    traces.forEach(tr => tr.x.forEach((_, i) => {
        const [a, b] = px(tr, i);
        if (Math.hypot(a - x, b - y) < 4) near.push(tr.customdata[i][0]);
    }));
    return {x: x, y: y, ids: near};
}"""


def click_point(page, chart: int) -> list[int]:
    """Click (no drag) one point of a chart; returns the global ids a click there may select."""
    page.locator(".js-plotly-plot").nth(chart).scroll_into_view_if_needed()
    wait_idle(page)
    p = page.evaluate(POINT_JS, chart)
    page.mouse.move(p["x"], p["y"])
    page.wait_for_timeout(300)  # hover first, as a user would
    page.mouse.click(p["x"], p["y"])
    return [int(i) for i in p["ids"]]


def shown_global_id(page, before: str | None, timeout: float = 60.0) -> tuple[int, str]:
    """The global id in the "Selected conformer" panel, once it differs from ``before``."""
    import re
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        found = page.get_by_text(re.compile(r"\(global id \d+\)"))
        if found.count():
            text = found.first.inner_text()
            if text != before:
                return int(re.search(r"global id (\d+)", text).group(1)), text
        time.sleep(0.3)
    raise AssertionError("no (new) selected conformer shown")


def test_a_single_click_selects_a_point_on_every_map(page, server):
    visit(page, server, "embeddings", "Embeddings")
    found = wait_for_plots(page, 3, timeout=180)
    assert sum(found[0]["n"]) == 10 and sum(found[1]["n"]) == 120  # molecules and conformers of the tiny set
    assert page.get_by_text("Click a point on a map").count() == 1  # nothing selected yet

    before = None
    for chart in (0, 1, 2):  # molecules, all conformers, the chosen molecule's conformers
        ids = click_point(page, chart)
        gid, before = shown_global_id(page, before)
        assert gid in ids, (chart, gid, ids)
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.get_by_text("points selected").count() == 0  # one point, not a box
        # the 2D depiction and the 3D view of the selected conformer
        assert page.locator('[data-testid="stImage"] img, [data-testid="stImage"] svg').count() >= 1
        viewer_3d(page)
        shot(page, f"maps-click-{chart}")
    # force arrows: the check box draws them, the length slider and colour bar are there
    viewer = page.frame_locator("iframe").first
    viewer.locator("#mv-forces").check()
    assert viewer.locator("#mv-scale").count() == 1 and viewer.locator(".mv-bar").count() == 1
    assert page.external_requests == []


# the hover card of the page: shown or not, the molecule it draws, its bonds and atom labels
CARD_JS = """() => {
    const c = document.querySelector('.mlipdiv-depiction');
    return c ? {shown: c.style.display === 'block', molecule: Number(c.dataset.molecule),
                lines: c.querySelectorAll('line').length,
                labels: Array.from(c.querySelectorAll('text')).map(t => t.textContent)} : null;
}"""


def hover_card(page, timeout: float = 30.0) -> dict | None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        card = page.evaluate(CARD_JS)
        if card and card["shown"]:
            return card
        time.sleep(0.2)
    return page.evaluate(CARD_JS)


def hover_point(page, chart: int) -> dict:
    """Move the pointer off every map, then onto one point of a chart (as a user would rest on it); returns the
    point as :data:`POINT_JS` gives it."""
    page.locator(".js-plotly-plot").nth(chart).scroll_into_view_if_needed()
    wait_idle(page)
    page.mouse.move(5, 5)
    p = page.evaluate(POINT_JS, chart)
    page.mouse.move(p["x"], p["y"])
    return p


def test_resting_the_pointer_on_a_map_point_shows_its_molecule_in_2d(page, server, tiny_dataset_path):
    from mlipdiv.io.load import load_dataset
    from mlipdiv.viz.sketch import sketch

    ds = load_dataset(tiny_dataset_path)
    offsets = list(ds.conformer_offsets())
    molecules = list(ds)
    visit(page, server, "embeddings", "Embeddings")
    wait_for_plots(page, 3, timeout=180)
    for chart in (0, 1):  # the molecule map and the map of all conformers
        p = hover_point(page, chart)
        card = hover_card(page)
        assert card and card["shown"], (chart, card)
        near = {next(i for i in range(len(molecules)) if offsets[i] <= gid < offsets[i + 1]) for gid in p["ids"]}
        assert card["molecule"] in near, (card, near)
        expected = sketch(molecules[card["molecule"]].smiles)
        n_bonds = sum(expected["b"][2::3])  # a double bond is two lines, a triple three
        assert card["lines"] == n_bonds and sorted(card["labels"]) == sorted(x for x in expected["l"] if x), card
        shot(page, f"maps-hover-{chart}")
        page.mouse.move(5, 5)  # leaving the point hides the card
        page.wait_for_timeout(500)
        assert not page.evaluate(CARD_JS)["shown"]
    # the sketches travel once per session: a rerun sends only the dataset's digest, and a browser that lost them
    # (here: forgotten on purpose) asks for them again
    received = "() => window.__mlipdivDepict.received"
    assert page.evaluate(received) == 1
    colour_by = page.locator('[data-testid="stRadio"]').filter(has_text="Colour by")
    colour_by.get_by_text("molecule", exact=True).click()
    wait_idle(page)
    assert page.evaluate(received) == 1  # the rerun sent the digest only
    page.evaluate("() => { window.__mlipdivDepict.data = null; }")
    colour_by.get_by_text("energy", exact=True).click()
    wait_idle(page)
    p = hover_point(page, 0)  # a hover without sketches asks for them (and shows nothing yet)
    page.wait_for_function(f"({received})() === 2", timeout=60_000)
    wait_idle(page)
    page.mouse.move(5, 5)
    page.mouse.move(p["x"], p["y"])
    card = hover_card(page)
    assert card and card["shown"] and card["lines"] > 0, card
    page.mouse.move(5, 5)
    # the chosen molecule's own conformer map needs no card: its molecule is drawn beside it
    hover_point(page, 2)
    page.wait_for_timeout(1000)
    assert not page.evaluate(CARD_JS)["shown"]
    # the Trade-off page's maps (drawn now that the maps are computed) show the structure too
    visit(page, server, "trade-off", "Trade-off")
    wait_for_plots(page, 3, timeout=180)  # the grid of points and the two maps
    maps = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                         ".map((d, k) => d.layout.meta && d.layout.meta.mlipdiv_depict ? k : -1).filter(k => k >= 0)")
    assert len(maps) == 2, maps
    hover_point(page, maps[0])
    card = hover_card(page)
    assert card and card["shown"] and card["lines"] > 0, card
    assert page.external_requests == []
