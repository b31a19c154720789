"""Dataset: browse molecules and conformers in 3D, diversity of the whole set, load or generate another dataset."""

from __future__ import annotations

import numpy as np
import streamlit as st

from mlipdiv.data.molecules import Entry, check_smiles, dedupe
from mlipdiv.diversity import conformational_diversity, structural_diversity
from mlipdiv.style import mev
from mlipdiv.viz import figures, molview, tables
from mlipdiv.viz.live import BackgroundTask
from pages import common

MAX_SMILES = 20  # molecules per generation from the page (the CLI has no limit)
MOLECULE_KEY = "p_dataset_molecule"

st.title("Dataset")
ds = common.dataset()
common.sidebar(ds)


@st.cache_data(show_spinner=False, max_entries=4)
def molecule_table(path: str, version: tuple) -> list[dict]:
    """Rows without depictions, per dataset file version (the page draws only the rows it shows)."""
    return tables.molecule_rows(common.load(path), depictions=False)


@st.cache_data(show_spinner=False, max_entries=4096)
def depiction(smiles: str) -> str:
    return molview.depiction_data_uri(smiles)


ROWS_PER_PAGE = 20


@st.cache_data(show_spinner="Measuring the diversity of the whole set (first time only) …", max_entries=4)
def whole_set_diversity(path: str, version: tuple) -> tuple[dict, dict]:
    data = common.load(path)
    summary, _ = conformational_diversity(data)
    return structural_diversity(data), summary


@st.cache_data(show_spinner=False, max_entries=4)
def energy_figure(path: str, version: tuple) -> object:
    """The histogram of every conformer's relative energy (100,000 values: built once per dataset version)."""
    all_rel = np.concatenate([tables.relative_energies(m.energy) for m in common.load(path)])
    return figures.energy_histogram(all_rel, title="All conformers: energy above their molecule's lowest", nbins=60)


if ds is not None:
    path = common.dataset_path()
    version = common.version(path)
    rows = molecule_table(str(path), version)

    # ---------------------------------------------------------------------------------------------- the table
    st.subheader(f"{len(ds):,} molecules, {ds.n_conformers:,} conformers ({ds.level_of_theory})")
    if "import_report" in ds.attrs:
        import json

        with st.expander(f"Import report ({ds.attrs.get('source', 'imported')})"):
            report = json.loads(ds.attrs["import_report"])
            cpm, fam, skipped = report["conformers_per_molecule"], report["families"], report["skipped"]
            c = st.columns(4)
            c[0].metric("Molecules", f"{report['molecules']:,}")
            c[1].metric("Conformers per molecule", f"{cpm['median']:g}", f"{cpm['min']}–{cpm['max']}",
                        delta_color="off", delta_arrow="off")
            c[2].metric("Families", f"{fam['total']:,}", help=fam["method"])
            c[3].metric("Skipped conformers", f"{skipped['conformers']:,}")
            st.markdown(f"Elements {' '.join(report['elements'])} · level of theory {report['level_of_theory']} · "
                        f"energy from `{report['energy_key']}`, forces "
                        + (f"from `{report['forces_key']}`" if report["forces"] else "**none** (not trainable)"))
            for line in report["units"]["conversions"] or ["units: eV and Å, no conversion"]:
                st.caption(line)
            if skipped["entries"]:
                st.dataframe(skipped["entries"], hide_index=True, height=200)
            if report["identity"]["disagreements"]:
                st.caption("SMILES of the file that disagree with the geometry:")
                st.dataframe(report["identity"]["disagreements"], hide_index=True, height=160)
    label = {r["id"]: f"{tables.display_name(r)} ({r['atoms']} atoms, {r['conformers']} conformers)" for r in rows}
    ids = [r["id"] for r in rows]
    if st.session_state.get(MOLECULE_KEY) not in ids:
        st.session_state[MOLECULE_KEY] = ids[0]

    @st.fragment
    def molecule_table_view() -> None:
        """Searching and paging rerun only this part: the 3D viewer and the charts below are not sent again."""
        query = st.text_input("Search by name, formula (e.g. `C7H8O`), SMILES, id, or a SMARTS substructure (e.g. "
                              "`c1ccccc1`, `[OX2H]`)", key="dataset_search")
        shown, how = tables.search_molecules(rows, query)
        if how == "none":
            st.warning(f"No molecule matches {common.md(repr(query))} (as text or as a SMARTS pattern).")
            shown = rows
        elif how == "smarts":
            st.caption(f"{len(shown)} molecules contain the substructure {common.md(query)}.")
        # only one page of rows is drawn and sent: 1,000 depictions at once took seconds on every visit
        pages = max(1, -(-len(shown) // ROWS_PER_PAGE))
        if st.session_state.get("dataset_page", 1) > pages:
            st.session_state["dataset_page"] = 1
        top = st.columns([3, 1])
        page = int(top[1].number_input(f"Page (of {pages})", 1, pages, key="dataset_page"))
        top[0].caption(f"{len(shown):,} molecules; {ROWS_PER_PAGE} per page. Names: formula · the source's name. "
                       "Click a row to see its conformers below.")
        shown = shown[(page - 1) * ROWS_PER_PAGE: page * ROWS_PER_PAGE]
        columns = ["structure", "formula", "name", "smiles", "atoms", "conformers", "families",
                   "energy range (meV)", "id"]
        event = st.dataframe(
            [{k: r[k] for k in columns} for r in tables.with_depictions(shown, depiction)],
            column_config={
                "structure": st.column_config.ImageColumn("structure", width="medium"),
                "smiles": st.column_config.TextColumn("SMILES"),
                "energy range (meV)": st.column_config.NumberColumn(format="%.0f",
                                                                    help="highest minus lowest conformer energy"),
                "families": st.column_config.NumberColumn(help="distinct relaxed conformers the samples come from"),
            },
            row_height=72,
            height=min(460, 40 + 73 * len(shown)),
            hide_index=True,
            on_select="rerun",
            selection_mode="single-row",
            key="dataset_table",
        )
        picked = event.selection.rows if event is not None and hasattr(event, "selection") else []
        on_page = [r["id"] for r in shown]
        if picked and picked[0] < len(on_page) and st.session_state.get("dataset_table_last") != on_page[picked[0]]:
            st.session_state["dataset_table_last"] = on_page[picked[0]]
            st.session_state[MOLECULE_KEY] = on_page[picked[0]]  # the table drives the select box below
            st.rerun(scope="app")

    molecule_table_view()

    # ---------------------------------------------------------------------------------------------- one molecule
    st.subheader("Conformers of one molecule")

    @st.fragment
    def molecule_view() -> None:
        """Choosing another molecule here reruns only this part, not the (large) molecule table above."""
        mol_id = st.selectbox("Molecule (or click a row above)", ids, format_func=label.get, key=MOLECULE_KEY)
        mol = ds[mol_id]
        rel = mev(tables.relative_energies(mol.energy))
        captions = [
            f"conformer {j} of {mol.n_conformers}: {rel[j]:.0f} meV above the lowest · family {mol.parent[j]} · "
            f"{mol.method[j]}" + (f" at {mol.temperature[j]:.0f} K" if mol.temperature[j] > 0 else "")
            for j in range(mol.n_conformers)
        ]
        left, right = st.columns([5, 4])
        with left:
            st.iframe(molview.view_html(mol.atomic_numbers, mol.positions, forces=mol.forces, captions=captions,
                                        height=420), height=480)
            st.caption("Step through the conformers with the slider, ◀ ▶ or the arrow keys (in the browser, no "
                       "waiting); the check box draws the GFN2-xTB forces.")
        with right:
            st.plotly_chart(figures.energy_histogram(tables.relative_energies(mol.energy),
                                                     title=f"{label[mol_id].split(' (')[0]}: conformer energies"),
                            width="stretch", key="molecule_histogram")
            st.dataframe(tables.conformer_rows(mol), hide_index=True, height=260,
                         column_config={"energy above lowest (meV)": st.column_config.NumberColumn(format="%.0f"),
                                        "largest force (meV/Å)": st.column_config.NumberColumn(format="%.0f")})

    molecule_view()

    # ---------------------------------------------------------------------------------------------- whole set
    st.subheader("Diversity of the whole set")
    structural, conformational = whole_set_diversity(str(path), version)
    c = st.columns(3) + st.columns(3)  # two rows: six metrics in one row cut their labels at 1400 px
    c[0].metric("Molecules", f"{structural['n_molecules']:,}")
    c[1].metric("Scaffolds", structural["n_scaffolds"], help="distinct Bemis–Murcko scaffolds (acyclic = one)")
    c[2].metric("Tanimoto Vendi score", f"{structural['tanimoto_vendi']:.1f}",
                help="effective number of distinct molecules (Morgan fingerprints, radius 2)")
    c[3].metric("Mean Tanimoto distance", f"{structural['mean_tanimoto_distance']:.2f}")
    c[4].metric("Conformer Vendi score", f"{conformational['mean_vendi']:.1f}",
                help="effective number of distinct conformers per molecule (mean over molecules)")
    c[5].metric("RMSD spread", f"{conformational['mean_rmsd_spread']:.2f} Å",
                help="mean pairwise heavy-atom RMSD within a molecule, averaged over molecules")
    st.plotly_chart(energy_figure(str(path), version), width="stretch", key="dataset_histogram")

# -------------------------------------------------------------------------------------------------- other data
st.subheader("Use another dataset")
tab_upload, tab_generate = st.tabs(["Load a file", "Generate from SMILES"])

with tab_upload:
    st.markdown(f"An mlipdiv HDF5 file (`.h5`) or extended XYZ, or your own data in another program's format — an "
                f"ASE database (`.db`), extended XYZ from MACE/NequIP workflows, SPICE or ANI-1x style HDF5, an rMD17 "
                f"`.npz` — which is imported (molecules by connectivity, conformer families, units converted to eV "
                f"and Å), at most {common.MAX_UPLOAD_MB} MB. The file is checked as the command line checks "
                "`--dataset` (or `import`) before it can be used.")
    with st.expander("Import options (other formats; empty: detected)"):
        k = st.columns(5)
        import_options = {
            "energy_key": k[0].text_input("Energy key", key="import_energy_key",
                                          help="e.g. energy_U0, wb97x_dz.energy, formation_energy"),
            "forces_key": k[1].text_input("Forces key", key="import_forces_key"),
            "energy_unit": k[2].selectbox("Energy unit", ["", "eV", "hartree", "kcal/mol", "kJ/mol"],
                                          key="import_energy_unit", help="empty: the file's metadata, else the "
                                          "format's convention (eV; hartree for SPICE/ANI; kcal/mol for npz)"),
            "length_unit": k[3].selectbox("Length unit", ["", "angstrom", "bohr"], key="import_length_unit"),
            "level_of_theory": k[4].text_input("Level of theory", key="import_level"),
        }
    upload = st.file_uploader("Dataset file", type=["h5", "hdf5", "xyz", "extxyz", "db", "npz"],
                              key="dataset_upload")
    if upload is not None:
        result = common.accept_upload(upload, {k: v for k, v in import_options.items() if v})
        if not result.ok:
            st.error(common.md(result.error), icon=":material/error:")
        else:
            loaded = result.dataset
            st.success(f"{common.md(result.name)}: {len(loaded)} molecules, {loaded.n_conformers} conformers, "
                       f"{loaded.level_of_theory}" + (" (imported)." if result.report else "."))
            if result.report and not result.report["forces"]:
                st.warning("No forces in this file: it can be explored, not trained on.", icon=":material/warning:")
            if st.button("Use this dataset in every page", key="use_upload", type="primary"):
                common.set_dataset_path(result.path, name=result.name)
                st.rerun()
    if common.dataset_path().resolve() != common.default_dataset_path().resolve():
        if st.button("Back to the default dataset", key="use_default"):
            common.set_dataset_path(None)
            st.rerun()

with tab_generate:
    st.markdown(f"One SMILES per line, optionally followed by a name; at most {MAX_SMILES} molecules. Each one is "
                "embedded, relaxed and sampled around its conformers, and every geometry is labelled with GFN2-xTB. "
                "Elements H C N O F S Cl, neutral, one fragment.")
    text = st.text_area("SMILES", placeholder="CCO ethanol\nc1ccccc1O phenol", key="generate_smiles")
    c = st.columns(3)
    n_conf = c[0].number_input("Conformers per molecule", 4, 200, 24, step=4, key="generate_conformers")
    n_parents = c[1].number_input("Distinct conformers (families)", 1, 10, 3, key="generate_parents")
    task: BackgroundTask | None = st.session_state.get("generate_task")
    if st.button("Generate", key="generate_start", disabled=task is not None and task.status == "running"):
        lines = [ln.split(None, 1) for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if not lines:
            st.error("Paste at least one SMILES.")
        elif len(lines) > MAX_SMILES:
            st.error(f"{len(lines)} molecules pasted; at most {MAX_SMILES} here (use `python -m mlipdiv generate` "
                     "for more).")
        else:
            checked = dedupe([check_smiles(p[0], name=p[1].strip() if len(p) > 1 else "") for p in lines])
            entries = [e for e in checked if isinstance(e, Entry)]
            st.session_state["generate_rejected"] = [(e.input, e.reason) for e in checked if not isinstance(e, Entry)]
            if entries:
                st.session_state["generate_task"] = common.start_generation(entries, int(n_conf), int(n_parents))
                names = [e.name or e.smiles for e in entries]
                st.session_state["generate_name"] = (f"generated: {', '.join(names[:3])}"
                                                     f"{' …' if len(names) > 3 else ''} ({len(names)} molecules)")
                st.rerun()
            else:
                st.session_state.pop("generate_task", None)
                st.error("None of the SMILES can be used (reasons below).")
    for text_in, reason in st.session_state.get("generate_rejected", []):
        st.warning(f"Skipped {common.md(repr(text_in))}: {common.md(reason)}")

    @st.fragment(run_every=1.0 if task is not None and task.status == "running" else None)
    def generation_progress() -> None:
        t: BackgroundTask | None = st.session_state.get("generate_task")
        if t is None:
            return
        st.progress(t.fraction, text=f"Generating: {t.done} of {t.total} molecules. {t.message}")
        if t.status == "failed":
            st.error(f"Generation failed: {common.md(t.error)}")
        elif t.status == "done":
            report = t.result["report"]
            st.success(f"Done: {report['molecules']} molecules, {report['conformers']} conformers in "
                       f"{report['wall_seconds_this_run']:.0f} s.")
            for s in report.get("skipped", []):
                st.warning(f"Skipped {common.md(s['input'])}: {common.md(s['reason'])}")
            if st.button("Use the generated dataset in every page", key="use_generated", type="primary"):
                # the sidebar names it by its molecules, not by the file's hash name
                common.set_dataset_path(t.result["path"], name=st.session_state.get("generate_name"))
                st.session_state.pop("generate_task", None)
                st.rerun(scope="app")
        if t.status != "running" and st.session_state.get("generate_was_running"):
            st.session_state["generate_was_running"] = False
            st.rerun(scope="app")  # stop polling
        st.session_state["generate_was_running"] = t.status == "running"

    generation_progress()
