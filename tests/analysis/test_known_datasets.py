"""The published datasets placed on the budget map (mlipdiv.analysis.known_datasets)."""

from __future__ import annotations

from mlipdiv.analysis.known_datasets import KNOWN_DATASETS, known_datasets, on_map


def test_known_datasets_complete_with_sources() -> None:
    names = {d.name for d in KNOWN_DATASETS}
    expected = {"ANI-1", "GEOM", "Molecule3D", "nablaDFT", "OrbNet Denali", "PCQM B3LYP", "QMugs", "QM7-X", "SPICE",
                "SN2RXN", "Transition1x", "tmQM", "QM9", "rMD17"}
    assert expected <= names
    for d in KNOWN_DATASETS:
        assert d.source and "(20" in d.source and ("doi:" in d.source or "arXiv:" in d.source), d.name
        assert d.level_of_theory and d.n_conformers > 0
        if d.n_molecules is None:
            assert d.conformers_per_molecule is None  # Transition1x: organised by reactions
            continue
        ratio = d.n_conformers / d.n_molecules
        # published ratios are rounded (QM7-X 603.6 -> 603, SN2RXN 11,608 -> 11,600)
        assert abs(d.conformers_per_molecule - ratio) <= max(1.0, 0.01 * ratio), d.name
    assert "Transition1x" not in {d.name for d in on_map()}
    rows = known_datasets()
    assert {"name", "n_molecules", "n_conformers", "conformers_per_molecule", "level_of_theory",
            "source"} <= set(rows[0])
