"""App responsiveness: first-load time of every page and the time of its common interactions, in a real browser.

Starts ``streamlit run app.py`` on a free localhost port with a temporary run store, seeded with ``--runs`` finished
runs: ``--real`` of them are real trainings (a fixed-budget and a fixed-molecules sweep, 1 epoch, on the dataset),
the rest are copies of those records (metrics, curve and run folder) under other seed numbers, so the pages see as
many runs as a class would make without hours of training. Debian's Chromium (``/usr/bin/chromium``, never
downloaded) is driven by Playwright.

Times come from the page itself: a ``MutationObserver`` records every change of Streamlit's script state
(``data-test-script-state``) and a wrapped ``WebSocket`` the arrival of every message from the server; a step ends
at the last of them, once the state is ``notRunning`` and nothing has come for a moment. The messages matter on a
busy machine: when a short rerun's start and end reach a starved browser together, React draws them in one go and
the state attribute never leaves ``notRunning``, but the rerun's messages are still heard. A page's first load is
measured from navigation in a fresh browser session, after a warm-up visit of every page (the server is warm:
imports done, dataset and UMAP maps cached). An interaction is measured from the input event to the end of the
rerun it triggers (median and worst of ``--repeat`` tries); every interaction changes its input, so one that no
message answers within :data:`NO_RERUN_S` was lost on the way and is sent again once, with the next input."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELP = "first-load and interaction times of every app page in Chromium, with ~50 stored runs"
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
LOAD_TARGET_S = 3.0
INTERACTION_TARGET_S = 1.0

# (title, url path, heading) of every page, as app.py registers them
PAGES = [("Home", "", "How should a QM budget be split between molecules and conformers?"),
         ("Dataset", "dataset", "Dataset"), ("Trade-off", "trade-off", "Trade-off"), ("Runs", "runs", "Runs"),
         ("Embeddings", "embeddings", "Embeddings"), ("Budget", "budget", "Budget")]

# Records every change of the app's script state and the arrival of every server message, with its time since
# navigation (performance.now(), in ms).
_OBSERVER = """
window.__states = [];
window.__messages = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', () => window.__messages.push(performance.now()));
  }
};
new MutationObserver(muts => {
  for (const m of muts) {
    const nodes = m.type === 'attributes' ? [m.target]
      : Array.from(m.addedNodes).filter(n => n.querySelectorAll)
          .flatMap(n => [n, ...n.querySelectorAll('[data-test-script-state]')]);
    for (const n of nodes) {
      const s = n.getAttribute && n.getAttribute('data-test-script-state');
      if (s) window.__states.push([performance.now(), s]);
    }
  }
}).observe(document, {subtree: true, childList: true, attributes: true,
                      attributeFilter: ['data-test-script-state']});
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="dataset file (default: the bundled one)")
    parser.add_argument("--runs", type=int, default=50, help="finished runs in the store (default: 50)")
    parser.add_argument("--real", type=int, default=6, help="how many of them are real trainings (default: 6)")
    parser.add_argument("--repeat", type=int, default=3, help="tries of each interaction (default: 3)")
    parser.add_argument("--chromium", default=str(CHROMIUM), help="the browser (default: /usr/bin/chromium)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one step may take (default: 300)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


# ---------------------------------------------------------------------------------------------------- the store


def seed_store(root: Path, dataset: Path, total: int, real: int) -> dict[str, int]:
    """``real`` real 1-epoch trainings (a fixed-budget and a fixed-molecules sweep) and copies of them up to
    ``total`` runs, each copy under a seed number no real run uses (its config differs, its results do not)."""
    from mlipdiv.io.load import load_dataset
    from mlipdiv.jobs.store import RunStore
    from mlipdiv.jobs.sweep import plan_concurrency, plan_sweep, run_sweep
    from mlipdiv.selection import SplitSpec, default_budget

    store = RunStore(root)
    ds = load_dataset(dataset)
    options = {"hidden": 16, "patience": 1}
    half = max(1, real // 2)
    budget = default_budget(ds, SplitSpec(seed=0), 64)
    plans = [plan_sweep("fixed-budget", points=half, seeds=1, model="schnet", epochs=1, budget=budget,
                        dataset=dataset, options=options)]
    if real - half > 0:
        plans.append(plan_sweep("fixed-molecules", points=real - half, seeds=1, model="schnet", epochs=1,
                                molecules=min(8, len(ds) // 2), dataset=dataset, options=options))
    done = []
    for plan in plans:
        done += [r for r in run_sweep(plan, store, concurrency=plan_concurrency(plan, "auto")) if r.status == "done"]
    if not done:
        raise RuntimeError("no seed run finished: " + "; ".join(r.error or r.status for r in store.list()))
    copies = 0
    while len(done) + copies < total:
        src = done[copies % len(done)]
        seed = 1000 + copies
        clone = store.create({**src.config, "seed": seed}, key=f"bench-copy-{seed}-of-{src.id}")
        for item in src.run_dir.iterdir():  # predictions, metrics: what the Runs page reads from the folder
            if item.is_file() and not (clone.run_dir / item.name).exists():
                shutil.copy2(item, clone.run_dir / item.name)
        attempt = store.claim(clone.id, curve=src.curve).attempt
        store.finish(clone.id, attempt, "done", metrics=src.metrics, curve=src.curve)
        copies += 1
    return {"real": len(done), "copies": copies}


def warm_maps(dataset: Path) -> None:
    """Compute (or find in the cache) the dataset's default UMAP maps, as the server's background build would."""
    from mlipdiv.embeddings import MapParams, cached_map
    from mlipdiv.io.load import load_dataset

    ds = load_dataset(dataset)
    for kind in ("structures", "conformers"):
        cached_map(ds, MapParams(kind))


# ---------------------------------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run app.py`` on a free loopback port, stopped on exit."""

    def __init__(self, env: dict[str, str], log: Path, timeout: float = 120.0):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")  # noqa: SIM115 - closed in __exit__
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    return
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"streamlit did not start: {log.read_text()[-2000:]}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


# ---------------------------------------------------------------------------------------------------- timing


NO_RERUN_S = 30.0
"""How long after an input event nothing may come from the server before the event counts as lost (and is sent
again). Generous: on a loaded machine the event reaches the server and its rerun starts seconds later (3 s was too
short at load 6)."""


def _settled(pg: Any, since: float, timeout: float, quiet: float = 0.8) -> float:
    """Seconds from ``since`` (page time, ms) to the last script-state change or server message after it, once the
    state is ``notRunning`` and nothing has come for ``quiet`` seconds; 0 when nothing came within
    :data:`NO_RERUN_S` (no rerun)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        states, messages, now = pg.evaluate(
            "() => [window.__states || [], window.__messages || [], performance.now()]")
        heard = [t for t, _ in states if t >= since] + [t for t in messages if t >= since]
        running = bool(states) and states[-1][1] != "notRunning"
        if not heard:
            if now - since > NO_RERUN_S * 1000:
                return 0.0
        elif not running and now - max(heard) > quiet * 1000:
            return (max(heard) - since) / 1000
        time.sleep(0.05)
    raise TimeoutError(f"the app was still running after {timeout:.0f} s")


def _check(pg: Any) -> None:
    errors = pg.locator('[data-testid="stException"]')
    if errors.count():
        raise RuntimeError(f"the page shows an exception: {errors.first.inner_text()[:500]}")


def load_page(pg: Any, url: str, heading: str, timeout: float) -> float:
    """Navigate and return the seconds until the page's script run ended (from navigation start)."""
    pg.goto(url)
    pg.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=timeout * 1000)
    seconds = _settled(pg, 0.0, timeout)
    _check(pg)
    return seconds


def interact(pg: Any, action: Callable[[Any], None], timeout: float) -> float:
    """Seconds from ``action`` (an input event) to the end of the rerun it triggers."""
    since = pg.evaluate("() => performance.now()")
    action(pg)
    seconds = _settled(pg, since, timeout)
    _check(pg)
    return seconds


# ---------------------------------------------------------------------------------------------------- interactions


def _slider_step(direction: str) -> Callable[[Any], None]:
    def act(pg: Any) -> None:
        pg.get_by_role("slider").first.press(direction)
    return act


OPEN_TRIES = 6
"""How often a select box is asked to open before the step fails: on a busy machine a key press can arrive while
the widget is still being re-rendered and be dropped (one try of 10 s failed in CI)."""


def _select_option(label: str, steps: int) -> Callable[[Any], None]:
    """In the select box labelled ``label``, move ``steps`` options down (keyboard: open, arrows, Enter)."""
    def act(pg: Any) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        box = pg.get_by_role("combobox", name=label, exact=True).first  # locators are lazy: found anew each use
        listbox = pg.locator('[role="listbox"]').first
        for attempt in range(OPEN_TRIES):
            box.wait_for(state="visible", timeout=60_000)
            box.focus()
            box.press("ArrowDown")  # opens the list on the current option
            try:
                listbox.wait_for(state="attached", timeout=10_000)
                break
            except PlaywrightTimeout:  # the press was dropped: close whatever opened and press again
                if attempt == OPEN_TRIES - 1:
                    raise
                pg.keyboard.press("Escape")
        for _ in range(steps):
            box.press("ArrowDown")
        box.press("Enter")
    return act


def _radio(group: str, label: str) -> Callable[[Any], None]:
    def act(pg: Any) -> None:
        pg.locator('[data-testid="stRadio"]').filter(has_text=group).get_by_text(label, exact=True).first.click()
    return act


def _scale_number(label: str, factor: float) -> Callable[[Any], None]:
    """Multiply the number in the input labelled ``label`` by ``factor`` (so a change stays in a sensible range)."""
    def act(pg: Any) -> None:
        box = pg.locator('[data-testid="stNumberInput"]').filter(
            has=pg.locator('[data-testid="stWidgetLabel"]').get_by_text(label, exact=True)).locator("input").first
        box.fill(f"{max(1, round(float(box.input_value().replace(',', '')) * factor))}")
        box.press("Enter")
    return act


def _search(text: str) -> Callable[[Any], None]:
    def act(pg: Any) -> None:
        box = pg.locator('[data-testid="stTextInput"]').filter(has_text="Search by").locator("input").first
        box.fill(text)
        box.press("Enter")
    return act


# (page title, what, [actions tried in turn]): each action changes the input, so each try is a real rerun
INTERACTIONS: list[tuple[str, str, list[Callable[[Any], None]]]] = [
    ("Dataset", "molecule search", [_search(q) for q in ("C", "O", "N")]),
    ("Trade-off", "slider step", [_slider_step("ArrowRight"), _slider_step("ArrowLeft")]),
    ("Runs", "run selection", [_select_option("Run", 1)]),
    ("Embeddings", "colouring switch", [_radio("Colour by", x) for x in ("molecule", "energy",
                                                                          "split of the chosen trade-off")]),
    ("Budget", "budget change", [_scale_number("Budget", f) for f in (1.5, 1 / 1.5)]),
]


# ---------------------------------------------------------------------------------------------------- the run


@dataclass
class Result:
    loads: dict[str, float] = field(default_factory=dict)
    interactions: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    resent: dict[str, int] = field(default_factory=dict)  # input events the page never acted on, sent again
    store: dict[str, int] = field(default_factory=dict)
    setup_seconds: float = 0.0

    def rows(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for title, _path, _ in PAGES:
            if title in self.loads:
                out.append({"page": title, "step": "first load", "median_s": self.loads[title],
                            "worst_s": self.loads[title], "target_s": LOAD_TARGET_S})
        for key, times in self.interactions.items():
            page, what = key.split(": ", 1)
            out.append({"page": page, "step": what, "median_s": round(statistics.median(times), 2),
                        "worst_s": round(max(times), 2), "target_s": INTERACTION_TARGET_S, "tries_s": times})
        for row in out:
            row["ok"] = row["worst_s"] <= row["target_s"]
        return out


def measure(url: str, chromium: str, repeat: int, timeout: float) -> Result:
    from playwright.sync_api import sync_playwright

    result = Result()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            warm = browser.new_page(viewport={"width": 1400, "height": 900})
            warm.add_init_script(_OBSERVER)
            for _, path, heading in PAGES:  # the server warms up: imports, dataset, caches
                load_page(warm, f"{url}/{path}", heading, timeout)
            warm.close()
            pg = browser.new_page(viewport={"width": 1400, "height": 900})  # a fresh session
            pg.add_init_script(_OBSERVER)
            for title, path, heading in PAGES:
                result.loads[title] = round(load_page(pg, f"{url}/{path}", heading, timeout), 2)
                for page_title, what, actions in INTERACTIONS:
                    if page_title != title:
                        continue
                    times, resent = [], 0
                    try:
                        for i in range(repeat):
                            seconds = interact(pg, actions[(i + resent) % len(actions)], timeout)
                            if seconds == 0.0:  # every action changes its input: the event was lost, send the next
                                resent += 1
                                seconds = interact(pg, actions[(i + resent) % len(actions)], timeout)
                            times.append(round(seconds, 2))
                    except Exception as exc:  # noqa: BLE001 - reported in the table, the other pages still run
                        result.errors[f"{title}: {what}"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                    if times:
                        result.interactions[f"{title}: {what}"] = times
                    if resent:
                        result.resent[f"{title}: {what}"] = resent
        finally:
            browser.close()
    return result


def table(result: Result) -> str:
    lines = [f"{'page':<11} {'step':<17} {'median s':>8} {'worst s':>8} {'target s':>8}  ok"]
    for r in result.rows():
        lines.append(f"{r['page']:<11} {r['step']:<17} {r['median_s']:>8.2f} {r['worst_s']:>8.2f} "
                     f"{r['target_s']:>8.1f}  {'yes' if r['ok'] else 'NO'}")
    for key, err in result.errors.items():
        lines.append(f"{key}: failed ({err})")
    for key, n in result.resent.items():
        lines.append(f"{key}: {n} input event(s) sent again (the page never acted on the first)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mlipdiv.errors import InvalidSetting
    from mlipdiv.paths import default_dataset

    if not Path(args.chromium).exists():
        raise InvalidSetting(f"no browser at {args.chromium}: install Debian's chromium (apt-get install chromium)",
                             "chromium")
    if args.runs < 1 or not 1 <= args.real <= args.runs:
        raise InvalidSetting("--real must lie between 1 and --runs", "real")
    dataset = Path(args.dataset or default_dataset()).resolve()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlipdiv-bench-app-") as tmp:
        root = Path(tmp)
        print(f"seeding the store: {args.real} real 1-epoch runs, {args.runs - args.real} copies …", file=sys.stderr)
        counts = seed_store(root / "runs", dataset, args.runs, args.real)
        print("computing or reading the UMAP maps …", file=sys.stderr)
        warm_maps(dataset)
        setup = time.monotonic() - started
        env = {"MLIPDIV_DATASET": str(dataset), "MLIPDIV_HOME": str(root / "runs"), "MLIPDIV_CONCURRENCY": "1"}
        print("measuring in Chromium …", file=sys.stderr)
        with Server(env, root / "streamlit.log") as server:
            result = measure(server.url, args.chromium, max(1, args.repeat), args.timeout)
    result.store, result.setup_seconds = counts, round(setup, 1)
    rows = result.rows()
    if args.json:
        print(json.dumps({"dataset": dataset.name, "store": counts, "setup_seconds": result.setup_seconds,
                          "rows": rows, "errors": result.errors, "resent": result.resent}, indent=2))
    else:
        print(f"{dataset.name}; {sum(counts.values())} stored runs ({counts['real']} real, {counts['copies']} "
              f"copies); setup {result.setup_seconds:.0f} s")
        print(table(result))
    return 0 if rows and all(r["ok"] for r in rows) and not result.errors else 1
