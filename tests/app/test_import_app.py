"""The app on the user's own data: a SPICE-style upload is imported on the Dataset page (its report shown), and the
Budget page marks that dataset on the map beside the published ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from import_sources import spice_h5

pytestmark = pytest.mark.slow

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_dataset_path):
    root = tmp_path_factory.mktemp("app_import")
    shutil.copy(tiny_dataset_path, root / "tiny.h5")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLIPDIV_DATASET", str(root / "tiny.h5"))
        mp.setenv("MLIPDIV_HOME", str(root / "runs"))
        mp.setenv("MLIPDIV_CACHE", str(root / "cache"))
        yield root


def test_an_imported_upload_is_used_and_marked_on_the_budget_map(env, tmp_path):
    from streamlit.testing.v1 import AppTest

    spice_h5(tmp_path / "my_spice.h5")
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/dataset.py").run()
    at.file_uploader(key="dataset_upload").upload("my_spice.h5", (tmp_path / "my_spice.h5").read_bytes())
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # the file name is Markdown-escaped (my\_spice.h5) so that it shows as typed
    assert any(s.value.replace("\\", "").startswith("my_spice.h5: 3 molecules, 15 conformers")
               and "(imported)" in s.value for s in at.success)
    at.button(key="use_upload").click().run()
    assert not at.exception
    assert any(e.label.startswith("Import report") for e in at.expander)
    assert any(m.label == "Skipped conformers" and m.value == "5" for m in at.metric)  # the charged acetate
    at.switch_page("pages/budget.py").run()
    assert not at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    marks = [t for s in specs for t in s["data"] if t.get("name") == "your dataset: my_spice.h5"]
    assert len(marks) == 1 and marks[0]["x"] == [3] and marks[0]["y"] == [5]
