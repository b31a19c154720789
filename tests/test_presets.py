"""The study presets (mlipdiv.presets) make valid training configurations."""

from __future__ import annotations


def test_presets_make_valid_training_configs() -> None:
    from mlipdiv.presets import PRESETS
    from mlipdiv.training import TrainConfig

    assert {"laptop-fixed-budget", "laptop-fixed-molecules", "gpu-fixed-budget", "ray-fixed-budget"} <= set(PRESETS)
    for p in PRESETS.values():
        assert (p.budget is not None) == (p.experiment == "fixed-budget")
        assert (p.molecules is not None) == (p.experiment == "fixed-molecules")
        for kw in p.sweeps():
            TrainConfig.from_dict({**kw["options"], "model": kw["model"], "epochs": kw["epochs"]})
    laptop = PRESETS["laptop-fixed-molecules"]
    assert laptop.epochs_for(8, 128) == laptop.epochs * 16 and laptop.epochs_for(128, 128) == laptop.epochs
