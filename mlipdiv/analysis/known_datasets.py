"""Published QM datasets, placed on the molecules x conformers-per-molecule map beside our fitted optimum.

Counts are as tabulated by the openQDC project (2023-2024), some of them rounded by it, copied in
``../shared/SCIENCE.md``; QM9 and rMD17, which that table lacks, take their counts from their own papers. Each row
cites the paper that introduced the dataset. ``conformers_per_molecule`` is the published (rounded) ratio, not
recomputed, so it can differ from ``n_conformers / n_molecules`` by rounding (QM7-X: 603.6 published as 603).
Transition1x is organised by reactions, not molecules: its molecule count is unknown (``None``), and it is listed but
not placed on the map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["KNOWN_DATASETS", "KnownDataset", "known_datasets", "on_map"]

_OPENQDC = "counts as tabulated by openQDC"


@dataclass(frozen=True)
class KnownDataset:
    name: str
    n_molecules: int | None
    n_conformers: int
    conformers_per_molecule: float | None
    level_of_theory: str
    forces: bool
    source: str
    off_equilibrium: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


KNOWN_DATASETS: tuple[KnownDataset, ...] = (
    KnownDataset(
        "ANI-1", 57_462, 20_000_000, 348, "ωB97x/6-31G(d)", False,
        "Smith, Isayev, Roitberg (2017), Scientific Data 4, 170193, doi:10.1038/sdata.2017.193; " + _OPENQDC, True,
    ),
    KnownDataset(
        "GEOM", 450_000, 37_000_000, 82, "GFN2-xTB", False,
        "Axelrod, Gómez-Bombarelli (2022), Scientific Data 9, 185, doi:10.1038/s41597-022-01288-4; " + _OPENQDC, False,
    ),
    KnownDataset(
        "Molecule3D", 3_899_647, 3_899_647, 1, "B3LYP/6-31G*", False,
        "Xu, Luo, Zhang et al. (2021), arXiv:2110.01717; " + _OPENQDC, False,
    ),
    KnownDataset(
        "nablaDFT", 1_000_000, 5_000_000, 5, "ωB97X-D/def2-SVP", False,
        "Khrabrov, Shenbin, Ryabov et al. (2022), Phys. Chem. Chem. Phys. 24, 25853, doi:10.1039/D2CP03966D; "
        + _OPENQDC, None,
    ),
    KnownDataset(
        "OrbNet Denali", 212_905, 2_300_000, 11, "GFN1-xTB", False,
        "Christensen, Sirumalla, Qiao et al. (2021), J. Chem. Phys. 155, 204103, doi:10.1063/5.0061990; " + _OPENQDC,
        True,
    ),
    KnownDataset(
        "PCQM B3LYP", 85_938_443, 85_938_443, 1, "B3LYP/6-31G*", False,
        "Nakata, Maeda (2023), J. Chem. Inf. Model. 63, 5734 (PubChemQC B3LYP/6-31G*//PM6), "
        "doi:10.1021/acs.jcim.3c00899; " + _OPENQDC, False,
    ),
    KnownDataset(
        "QMugs", 665_000, 2_000_000, 3, "GFN2-xTB, ωB97X-D/def2-SVP", False,
        "Isert, Atz, Jiménez-Luna, Schneider (2022), Scientific Data 9, 273, doi:10.1038/s41597-022-01390-7; "
        + _OPENQDC, False,
    ),
    KnownDataset(
        "QM7-X", 6_950, 4_195_237, 603, "PBE0+MBD", True,
        "Hoja, Medrano Sandonas, Ernst et al. (2021), Scientific Data 8, 43, doi:10.1038/s41597-021-00812-2; "
        + _OPENQDC, True,
    ),
    KnownDataset(
        "SPICE", 19_238, 1_132_808, 59, "ωB97M-D3(BJ)/def2-TZVPPD", True,
        "Eastman, Behara, Dotson et al. (2023), Scientific Data 10, 11, doi:10.1038/s41597-022-01882-6; " + _OPENQDC,
        True,
    ),
    KnownDataset(
        "SN2RXN", 39, 452_709, 11_600, "DSD-BLYP-D3(BJ)/def2-TZVP", True,
        "Unke, Meuwly (2019), J. Chem. Theory Comput. 15, 3678 (PhysNet), doi:10.1021/acs.jctc.9b00181; " + _OPENQDC,
        None,
    ),
    KnownDataset(
        "Transition1x", None, 9_654_813, None, "ωB97x/6-31G(d)", True,
        "Schreiner, Bhowmik, Vegge, Busk, Winther (2022), Scientific Data 9, 779, doi:10.1038/s41597-022-01870-w; "
        + _OPENQDC + " (no molecule count: organised by reactions)", True,
    ),
    KnownDataset(
        "tmQM", 86_665, 86_665, 1, "TPSSh-D3BJ/def2-SVP", False,
        "Balcells, Skjelstad (2020), J. Chem. Inf. Model. 60, 6135, doi:10.1021/acs.jcim.0c01041; " + _OPENQDC, False,
    ),
    KnownDataset(
        "QM9", 133_885, 133_885, 1, "B3LYP/6-31G(2df,p)", False,
        "Ramakrishnan, Dral, Rupp, von Lilienfeld (2014), Scientific Data 1, 140022, doi:10.1038/sdata.2014.22; "
        "counts from that paper", False,
    ),
    KnownDataset(
        "rMD17", 10, 1_000_000, 100_000, "PBE/def2-SVP", True,
        "Christensen, von Lilienfeld (2020), Mach. Learn.: Sci. Technol. 1, 045018, doi:10.1088/2632-2153/abba6f "
        "(revised MD17 of Chmiela et al. (2017), Sci. Adv. 3, e1603015, doi:10.1126/sciadv.1603015); "
        "counts from that paper (100,000 MD frames for each of 10 molecules)", True,
    ),
)


def known_datasets() -> list[dict]:
    """The table as plain dicts (what the CLI's ``--json`` and the app's table show)."""
    return [d.as_dict() for d in KNOWN_DATASETS]


def on_map() -> list[KnownDataset]:
    """Datasets with both a molecule count and a conformers-per-molecule figure (Transition1x has neither)."""
    return [d for d in KNOWN_DATASETS if d.n_molecules is not None and d.conformers_per_molecule is not None]
