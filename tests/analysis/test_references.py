"""The element-linear baseline on unseen molecules by M, with and without the isolated-atom prior
(mlipdiv.analysis.references), and its section of the report."""

from __future__ import annotations

import pandas as pd
import pytest

from mlipdiv.analysis.references import REFERENCE_COLUMNS, element_baselines, reference_summary


def test_prior_rescues_two_molecules_and_changes_nothing_once_elements_are_determined(tiny_dataset) -> None:
    """Real GFN2-xTB energies of the tiny dataset (10 molecules, 2 held out): at M = 2 the plain fit is off by
    many eV/atom and the prior is several times closer; with all 8 trainable molecules both fits agree; every M of
    a seed is scored on the same held-out conformers; an M beyond the trainable molecules is skipped."""
    table = element_baselines(tiny_dataset, molecules=(2, 8, 9), seeds=range(3), test_molecules=2,
                              val_per_molecule=1, max_eval_per_molecule=4)
    assert list(table.columns) == list(REFERENCE_COLUMNS)
    assert set(table["n_molecules"]) == {2, 8} and len(table) == 6
    assert table.groupby("seed")["n_eval"].nunique().eq(1).all() and (table["n_eval"] > 0).all()
    two, eight = table[table["n_molecules"] == 2], table[table["n_molecules"] == 8]
    assert (two["mae_prior"] * 5 < two["mae_plain"]).all() and (two["mae_plain"] > 5.0).all()  # eV/atom
    ratio = eight["mae_prior"].to_numpy() / eight["mae_plain"].to_numpy()
    assert ((ratio > 0.95) & (ratio < 1.05)).all()


def test_summary_and_report_section_follow_the_numbers(tmp_path) -> None:
    from mlipdiv.analysis.report import _md_references

    table = pd.DataFrame(
        [(2, 0, 416, 0, 0.7, 11.0), (2, 1, 416, 0, 0.9, 13.0), (32, 0, 416, 0, 0.050, 0.050),
         (32, 1, 416, 0, 0.040, 0.050), (128, 0, 416, 0, 0.03, 0.03), (128, 1, 416, 0, 0.03, 0.03)],
        columns=list(REFERENCE_COLUMNS))
    rows = reference_summary(table)
    assert [r["n_molecules"] for r in rows] == [2, 32, 128]
    assert (rows[0]["prior"], rows[0]["prior_max"], rows[0]["plain"]) == pytest.approx((0.8, 0.9, 12.0))
    assert rows[1]["ratio"] == pytest.approx(0.9) and rows[0]["n_eval"] == [416]
    text = "\n".join(_md_references(rows))
    assert "At M = 2 the isolated-atom prior gives 0.80 eV/atom (worst seed 0.90) against 12.00" in text
    assert "agree within 5 % at 1 of 2 M" in text  # M = 32 differs by 10 %
    assert "Not computed" in "\n".join(_md_references([]))
    table["mae_prior"] = float("nan")  # a dataset of another level of theory: no isolated-atom prior
    assert "no isolated-atom prior" in "\n".join(_md_references(reference_summary(table)))
