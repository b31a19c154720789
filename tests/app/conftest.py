"""Fixtures of the browser tests: one ``python app.py`` server (what ``make run`` starts) per test module (tiny
dataset, empty store and cache, one run at a time) and one headless Chromium page on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from browser_support import ARTIFACTS, CHROMIUM, ROOT, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dataset_path):
    """``python app.py`` on a free localhost port with the tiny dataset, an empty store and cache."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    root = tmp_path_factory.mktemp("browser")
    shutil.copy(tiny_dataset_path, root / "tiny.h5")
    port = free_port()
    # one run at a time: the live-curve test queues a second run behind the first (concurrency: tests/jobs); one
    # thread: a second one waits on cores the rest of a busy machine holds (900 tiny epochs: > 20 min at load 6)
    env = {**os.environ, "MLIPDIV_DATASET": str(root / "tiny.h5"), "MLIPDIV_HOME": str(root / "runs"),
           "MLIPDIV_CACHE": str(root / "cache"), "MLIPDIV_CONCURRENCY": "1x1"}
    log = open(root / "streamlit.log", "w")
    proc = subprocess.Popen(  # as ``make run`` starts it (``streamlit run`` would add the pages folder's names)
        [sys.executable, "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            break
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start: {(root / 'streamlit.log').read_text()[-2000:]}")
    if proc.poll() is not None:
        pytest.fail(f"streamlit exited: {(root / 'streamlit.log').read_text()[-2000:]}")
    yield {"url": url, "root": root}
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()



@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        pg = browser.new_page(viewport={"width": 1500, "height": 2400})
        pg.external_requests = []  # anything that left localhost
        pg.on("request", lambda r: pg.external_requests.append(r.url)
              if not r.url.startswith(("http://127.0.0.1", "data:", "blob:", "about:")) else None)
        yield pg
        browser.close()
