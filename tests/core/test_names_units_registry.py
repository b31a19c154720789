"""The core modules: names keep their on-disk strings, one registry helper, one units module, field-named errors."""

from __future__ import annotations

import json
import pickle

import pytest

from mlipdiv.errors import InvalidSetting, MlipdivError, UnknownName
from mlipdiv.names import (
    ACTIVE_STATUSES,
    EVAL_SPLITS,
    EXPERIMENTS,
    FINAL_STATUSES,
    SPLITS,
    STATUSES,
    TEST_SPLITS,
    Experiment,
    SplitName,
    Status,
)
from mlipdiv.registry import Registry


def test_enum_values_are_the_strings_on_disk() -> None:
    assert SPLITS == ("train", "val", "test_conformers", "test_molecules")
    assert EVAL_SPLITS == ("val", "test_conformers", "test_molecules")
    assert TEST_SPLITS == ("test_conformers", "test_molecules")
    assert EXPERIMENTS == ("fixed-budget", "fixed-molecules")
    assert STATUSES == ("queued", "running", "done", "failed", "cancelled", "interrupted")
    assert ACTIVE_STATUSES == ("queued", "running")
    assert FINAL_STATUSES == ("done", "failed", "cancelled", "interrupted")
    # written as the plain strings: JSON, f-strings, str(), dict keys looked up by the plain string
    assert json.dumps({SplitName.TEST_MOLECULES: Experiment.FIXED_BUDGET}) == '{"test_molecules": "fixed-budget"}'
    assert f"{Status.RUNNING}" == str(Status.RUNNING) == "running"
    assert {SplitName.VAL: 1}["val"] == 1 and Experiment("fixed-molecules") is Experiment.FIXED_MOLECULES
    assert pickle.loads(pickle.dumps(SplitName.TRAIN)) is SplitName.TRAIN


def test_store_and_live_share_the_active_statuses() -> None:
    from mlipdiv.jobs import store
    from mlipdiv.viz import live

    assert store.ACTIVE is live.ACTIVE is ACTIVE_STATUSES
    assert "CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted'))" in store._SCHEMA


def test_registry_lookup_and_unknown_name_lists_the_known_names() -> None:
    reg: Registry[int] = Registry("colour", normalize=str.lower)
    reg.register("Red", 1)
    reg.register("blue", 2)
    assert reg.get("RED") == 1 and reg["blue"] == 2 and reg.names() == ["red", "blue"]
    assert "red" in reg and "green" not in reg and list(reg) == ["red", "blue"] and len(reg) == 2
    with pytest.raises(UnknownName, match=r"^unknown colour 'green'; choose one of: red, blue$") as info:
        reg.get("green")
    exc = info.value
    assert isinstance(exc, MlipdivError) and exc.known == ["red", "blue"] and exc.name == "green"
    again = pickle.loads(pickle.dumps(exc))  # crosses process boundaries (workers, Ray) intact
    assert type(again) is UnknownName and str(again) == str(exc) and again.known == exc.known


def test_registry_loader_registers_on_first_use() -> None:
    reg: Registry[str] = Registry(
        "plugin", loader=lambda name: reg.register(name, name.upper()) if name == "x" else None
    )
    assert reg.names() == [] and reg.get("x") == "X" and reg.names() == ["x"]
    with pytest.raises(UnknownName):
        reg.get("y")


def test_every_lookup_raises_unknown_name() -> None:
    from mlipdiv.data.oracle import get_oracle
    from mlipdiv.models.registry import get_spec
    from mlipdiv.selection import get_strategy

    with pytest.raises(UnknownName, match="unknown model 'nope'; choose one of: schnet, painn, mace"):
        get_spec("nope")
    with pytest.raises(UnknownName, match="unknown strategy 'nope'; choose one of: random, diverse"):
        get_strategy("nope")
    with pytest.raises(UnknownName, match="unknown QM engine 'nope'; choose one of: gfn2-xtb"):
        get_oracle("nope")


def test_units() -> None:
    from mlipdiv import style, units

    assert units.EV_TO_MEV == 1000.0 and units.mev(0.0123) == pytest.approx(12.3) and units.mev(None) is None
    assert units.EV_PER_HARTREE == pytest.approx(27.211386245988)
    assert units.ANGSTROM_PER_BOHR * units.BOHR_PER_ANGSTROM == pytest.approx(1.0)
    assert style.mev is units.mev and style.EV_TO_MEV == units.EV_TO_MEV  # the charts use the same conversion
    import numpy as np

    assert np.allclose(units.mev(np.array([0.001, 0.002])), [1.0, 2.0])


def test_invalid_setting_names_the_field_and_the_cli_the_flag() -> None:
    from mlipdiv.cli import flag_for, user_message

    exc = InvalidSetting.out_of_range("batch_size", 0, "at least 1")
    assert str(exc) == "batch_size 0 is out of range: batch_size must be at least 1" and exc.field == "batch_size"
    assert user_message(exc) == "--batch-size 0 is out of range: batch_size must be at least 1"
    both = InvalidSetting("energy_weight and forces_weight are both 0", fields=("energy_weight", "forces_weight"))
    assert user_message(both) == "energy_weight and forces_weight are both 0 (--energy-weight, --forces-weight)"
    unknown = UnknownName("strategy", "x", ["random"], field="strategy")
    assert user_message(unknown) == "unknown strategy 'x'; choose one of: random (--strategy)"
    assert user_message(MlipdivError("plain")) == "plain" and flag_for("max_molecules") == "--max-molecules"
    assert isinstance(exc, ValueError)  # callers that caught the ValueError of earlier versions still do


def test_library_messages_name_fields_not_flags() -> None:
    from mlipdiv.data.generate import Settings

    with pytest.raises(InvalidSetting, match="^conformers must be at least 1$") as info:
        Settings(conformers=0)
    assert info.value.field == "conformers"
