"""Helpers of the browser tests (Debian's Chromium driven by Playwright against ``python app.py``):
waiting for a script run, visiting a page, reading the live Plotly figures, screenshots. The fixtures that start
the server and the browser are in ``tests/app/conftest.py``."""

from __future__ import annotations

import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def wait_idle(pg, timeout: float = 120.0) -> None:
    """Wait until Streamlit has finished the script run (the app's ``data-test-script-state`` says so for a
    moment; fragments that refresh on a timer make it blink, which the short quiet period tolerates).

    A page that polls while something trains (Runs, every 2 s) may never stay quiet for a second on a loaded machine:
    each refresh then takes most of its period. Its script runs still end, one after another; three separate ends
    count as idle too (a fragment reruns only after the page's own run ended). A run that never ends still fails."""
    deadline = time.time() + timeout
    quiet = ends = 0
    while time.time() < deadline and quiet < 4 and ends < 3:
        state = pg.locator("[data-test-script-state]").first.get_attribute("data-test-script-state")
        if state == "notRunning":
            ends += quiet == 0
            quiet += 1
        else:
            quiet = 0
        time.sleep(0.25)
    assert quiet >= 4 or ends >= 3, "the app kept running"


TIMINGS: dict[str, float] = {}  # seconds from navigation to the finished script run, per page (an artifact)


def visit(pg, server, path: str, heading: str) -> None:
    start = time.perf_counter()
    pg.goto(f"{server['url']}/{path}")
    pg.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=90_000)
    pg.get_by_text("Training device").first.wait_for(timeout=90_000)  # every page's sidebar names the device
    wait_idle(pg)
    TIMINGS.setdefault(path or "home", round(time.perf_counter() - start, 1))
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator('[data-testid="stException"]').first \
        .inner_text()


def plots(pg) -> list[dict]:
    """Title and trace lengths of every Plotly chart on the page (read from the live plot objects)."""
    return pg.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({
        title: (d.layout && d.layout.title && d.layout.title.text) || '',
        n: (d._fullData || d.data || []).map(t => (t.x && t.x.length) || 0)}))""")


def wait_for_plots(pg, count: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = plots(pg)
        if len(found) >= count:
            return found
        time.sleep(0.5)
    raise AssertionError(f"expected {count} plots, found {plots(pg)}")


def viewer_3d(pg, timeout: float = 30.0):
    """The first 3D viewer, scrolled into view and running: a viewer starts only once it is visible (see
    mlipdiv.viz.molview), as a user scrolling to it would see."""
    pg.locator("iframe").first.scroll_into_view_if_needed(timeout=timeout * 1000)
    viewer = pg.frame_locator("iframe").first
    viewer.locator("canvas").first.wait_for(timeout=timeout * 1000)
    return viewer


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"))


# Labels cut short: a Streamlit element whose text overflows its box with an ellipsis (metric labels, tabs, select
# boxes), a Plotly title, axis title or legend entry reaching outside its figure, and a text label on a scatter
# reaching outside the plot area (where Plotly clips it: "rMD17" drawn as "017").
TRUNCATED_JS = """() => {
  const out = [];
  const visible = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  for (const e of document.querySelectorAll('[data-testid="stMain"] *')) {
    if (!e.childElementCount && e.textContent.trim() && visible(e)) {
      const s = getComputedStyle(e);
      if (s.textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth + 1)
        out.push('cut: ' + e.textContent.trim());
    }
  }
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const svg = plot.querySelector('.main-svg');
    if (!svg || !visible(svg)) continue;
    const box = svg.getBoundingClientRect();
    const inside = (r, b) => r.left >= b.left - 1 && r.right <= b.right + 1
      && r.top >= b.top - 1 && r.bottom <= b.bottom + 1;
    const labels = '.gtitle, .g-xtitle text, .g-ytitle text, .g-y2title text, .legendtext, .annotation-text';
    for (const t of plot.querySelectorAll(labels)) {
      const r = t.getBoundingClientRect();
      if (r.width > 0 && t.textContent.trim() && !inside(r, box))
        out.push('outside its figure: ' + t.textContent.trim());
    }
    const area = plot.querySelector('.nsewdrag');
    if (!area) continue;
    const a = area.getBoundingClientRect();
    for (const t of plot.querySelectorAll('.textpoint text')) {
      const r = t.getBoundingClientRect();
      const clipped = t.closest('[clip-path]') !== null;  // cliponaxis: Plotly cuts it at the plot area
      if (r.width > 0 && t.textContent.trim() && !inside(r, clipped ? a : box))
        out.push('clipped point label: ' + t.textContent.trim());
    }
  }
  return out;
}"""


def truncated_labels(pg) -> list[str]:
    """Visible labels the page cuts short (see ``TRUNCATED_JS``); empty when every label shows in full."""
    return pg.evaluate(TRUNCATED_JS)
