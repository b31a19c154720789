"""Configuration declared once: nested TrainConfig, its flat form and run keys, flags generated from the fields."""

from __future__ import annotations

import argparse

import pytest

from mlipdiv.cli.options import add_dataclass_arguments, from_args, option_keys
from mlipdiv.errors import InvalidSetting, MlipdivError
from mlipdiv.selection.splits import SplitSpec
from mlipdiv.training.config import ModelConfig, OptimConfig, TrainConfig, settings

DIGEST = "0123456789abcdef0123456789abcdef01234567"

# Computed with the flat TrainConfig before the configuration was nested (commit b5aac70): the run keys of existing
# stores must not change.
PLAIN = {"dataset": "/data/set.h5", "budget": None, "molecules": 8, "conformers_per_molecule": 2,
         "strategy": "random", "molecule_split": "random", "conformer_holdout": "family", "test_molecules": 0.2,
         "val_per_molecule": 4, "model": "schnet", "hidden": 128, "interactions": 3, "cutoff": 5.0, "epochs": 10,
         "batch_size": 16, "lr": None, "weight_decay": 1e-05, "warmup_epochs": 1.0, "final_lr_ratio": 0.02,
         "energy_weight": 10.0, "forces_weight": 1.0, "grad_clip": 10.0, "patience": 20, "seed": 0, "device": "auto",
         "eval_batch_size": 128}
EVERYTHING = {"dataset": "/data/other.h5", "budget": 64, "molecules": 16, "strategy": "diverse",
              "molecule_split": "scaffold", "conformer_holdout": "random", "test_molecules": 3,
              "val_per_molecule": 2, "model": "mace", "hidden": 64, "interactions": 2, "cutoff": 4.5, "epochs": 7,
              "batch_size": 8, "lr": 3e-3, "weight_decay": 1e-4, "warmup_epochs": 0.5, "final_lr_ratio": 0.1,
              "energy_weight": 1.0, "forces_weight": 100.0, "grad_clip": float("inf"), "patience": 5, "seed": 3,
              "device": "cpu", "eval_batch_size": 32}
OLD_KEYS = {"plain": "3c73f0993161f1a4", "everything": "1b391407235fba7e"}
OLD_PRESET_KEYS = {  # (preset, model, strategy) with dataset /d.h5, 4 molecules x 2 conformers
    ("laptop-fixed-budget", "schnet", "random"): "047a7a0f714dd71c",
    ("docs-fixed-budget", "painn", "random"): "f3d5fd09b267bc5a",
    ("docs-diverse", "schnet", "diverse"): "4a39d33324813fad",
    ("gpu-fixed-budget", "mace", "diverse"): "b654bee523c51c39",
    ("ray-fixed-molecules", "painn", "random"): "9d6128639b324c5d",
}


def test_flat_form_and_run_keys_are_the_old_ones() -> None:
    from mlipdiv.jobs.sweep import run_key

    plain = TrainConfig.from_flat(dataset="/data/set.h5", molecules=8, conformers_per_molecule=2, model="schnet",
                                  epochs=10)
    assert plain.to_dict() == PLAIN
    assert run_key(plain.to_dict(), DIGEST) == OLD_KEYS["plain"]
    assert run_key(TrainConfig.from_flat(**EVERYTHING).to_dict(), DIGEST) == OLD_KEYS["everything"]
    assert TrainConfig.from_dict(PLAIN) == plain  # an existing config.json reads back


def test_presets_keep_their_run_keys_and_repeat_no_default() -> None:
    from mlipdiv.jobs.sweep import run_key
    from mlipdiv.presets import PRESETS

    for (name, model, strategy), key in OLD_PRESET_KEYS.items():
        kw = next(k for k in PRESETS[name].sweeps() if k["model"] == model and k["options"]["strategy"] == strategy)
        cfg = TrainConfig.from_dict({**kw["options"], "dataset": "/d.h5", "model": model, "epochs": kw["epochs"],
                                     "molecules": 4, "conformers_per_molecule": 2})
        assert run_key(cfg.to_dict(), DIGEST) == key, name
    from mlipdiv.training.config import settings

    defaults = {s.key: s.field.default for s in settings(TrainConfig)}
    for p in PRESETS.values():
        repeated = {k: v for k, v in p.template.items() if defaults[k] == v}
        assert not repeated, f"preset {p.name} repeats TrainConfig defaults {repeated}"


def test_nested_sections_and_flat_keys() -> None:
    cfg = TrainConfig.from_flat(**EVERYTHING)
    assert (type(cfg.split), type(cfg.model), type(cfg.optim)) == (SplitSpec, ModelConfig, OptimConfig)
    assert (cfg.split.budget, cfg.model.name, cfg.optim.lr, cfg.seed) == (64, "mace", 3e-3, 3)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(hidden=32).model.hidden == 32 and cfg.model.hidden == 64
    keys = [s.key for s in settings(TrainConfig)]
    assert len(keys) == len(set(keys))  # one key per setting
    # the split options a flat config could not set appear only when set, so older keys hold
    assert "test_conformer_fraction" not in cfg.to_dict()
    wider = cfg.replace(test_conformer_fraction=0.5)
    assert wider.to_dict()["test_conformer_fraction"] == 0.5 and TrainConfig.from_dict(wider.to_dict()) == wider
    with pytest.raises(MlipdivError, match="unknown training options: colour"):
        TrainConfig.from_dict({**PLAIN, "colour": "blue"})
    with pytest.raises(InvalidSetting, match="^device must be one of") as info:  # the field; the CLI shows the flag
        cfg.replace(device="tpu")
    assert info.value.field == "device"


def _parser(cls: type, **kw) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, cls, **kw)
    return parser


def _flags(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    return {a.dest: a.option_strings for a in parser._actions if a.dest != "help"}


@pytest.mark.parametrize("verb", ["train", "split"])
def test_each_setting_has_one_flag_with_the_fields_default(verb: str) -> None:
    from mlipdiv.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    flags = _flags(sub)
    cls = TrainConfig if verb == "train" else SplitSpec
    parsed = sub.parse_args([])
    for s in settings(cls):
        assert flags.pop(s.key) == [f"--{s.key.replace('_', '-')}"]
        default = None if verb == "train" and s.key in ("model", "epochs") else s.field.default
        assert getattr(parsed, s.key) == default, s.key
    assert not set(flags) & {s.key for s in settings(TrainConfig)} - ({"dataset"} if verb == "split" else set())


def test_flags_build_the_configuration() -> None:
    parser = _parser(TrainConfig, required=("model", "epochs"))
    args = parser.parse_args(["--model", "painn", "--epochs", "3", "--lr", "0.001", "--budget", "16", "--molecules",
                              "8", "--seed", "2", "--grad-clip", "inf"])
    cfg = from_args(TrainConfig, args)
    assert cfg == TrainConfig.from_flat(model="painn", epochs=3, lr=1e-3, budget=16, molecules=8, seed=2,
                                        grad_clip=float("inf"))
    assert from_args(SplitSpec, _parser(SplitSpec).parse_args(["--budget", "4"])) == SplitSpec(budget=4)
    only = _parser(TrainConfig, only=("hidden", "batch_size"), defaults={"batch_size": 32})
    assert set(_flags(only)) == {"hidden", "batch_size"} == set(option_keys(TrainConfig, only=("hidden", "batch_size")))
    assert only.parse_args([]).batch_size == 32
    with pytest.raises(SystemExit):
        _parser(TrainConfig).parse_args(["--device", "tpu"])  # choices come from the field
