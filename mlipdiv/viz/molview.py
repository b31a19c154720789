"""Molecules on screen: 3D views (py3Dmol with a local 3Dmol.js) and 2D depictions (RDKit SVG data URIs).

py3Dmol loads 3Dmol.js from a CDN by default, which fails on a machine without internet (a lecture hall, a cluster
node). :func:`view_html` builds the view with py3Dmol and inlines ``assets/3Dmol-min.js`` instead: 3Dmol.js 2.5.5,
BSD-3-Clause, taken unmodified from the npm package ``3dmol`` (``build/3Dmol-min.js``; see ``assets/README.md``).
The returned HTML is self-contained, so it renders inside Streamlit's ``st.iframe`` with no network. All conformers
of a molecule go into one view as frames, stepped through in the browser.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.units import mev

__all__ = ["THREEDMOL_JS", "depiction_data_uri", "depiction_svg", "view_html", "xyz_block"]

THREEDMOL_JS = Path(__file__).with_name("assets") / "3Dmol-min.js"
MOLVIEW_JS = THREEDMOL_JS.with_name("molview.js")  # the page script: conformer stepping, force arrows
_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe"
).split()


@lru_cache(maxsize=1)
def _threedmol_source() -> str:
    """3Dmol.js (about 0.5 MB), read once per process."""
    return THREEDMOL_JS.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _molview_source() -> str:
    """The page script, read once per process."""
    return MOLVIEW_JS.read_text(encoding="utf-8")


def xyz_block(atomic_numbers: np.ndarray, positions: np.ndarray, comment: str = "") -> str:
    """An XYZ file as text (positions in angstrom)."""
    z = np.asarray(atomic_numbers, dtype=int)
    pos = np.asarray(positions, dtype=float).reshape(len(z), 3)
    lines = [str(len(z)), comment.replace("\n", " ")]
    lines += [f"{_SYMBOLS[n] if n < len(_SYMBOLS) else 'X'} {x:.5f} {y:.5f} {w:.5f}" for n, (x, y, w) in zip(z, pos)]
    return "\n".join(lines) + "\n"


def view_html(
    atomic_numbers: np.ndarray,
    positions: np.ndarray,
    forces: np.ndarray | None = None,
    captions: Sequence[str] | None = None,
    start: int = 0,
    height: int = 420,
    style: str = "stick",
) -> str:
    """Self-contained HTML of a 3Dmol.js view of one conformer or of all conformers of a molecule.

    With several conformers, a slider under the view (arrow keys, ◀ ▶, play) steps through them in the browser
    itself, so stepping costs no round trip to the server; each step shows that conformer's caption.

    Args:
        atomic_numbers: (n_atoms,).
        positions: (n_atoms, 3) or (n_conf, n_atoms, 3), angstrom.
        forces: optional, same shape as ``positions``, eV/angstrom: a check box draws them as arrows. Each
            conformer's arrows are scaled so its largest force is 1.2 angstrom long (times a length slider), and
            start at the atom's surface, so even small forces stick out of the spheres; their colour gives the
            magnitude on one scale for all conformers of the molecule (a colour bar under the view, meV/angstrom).
        captions: one text per conformer (e.g. its energy), shown in the top-left corner; HTML-escaped.
        start: the conformer shown first.
        height: pixels.
        style: ``"stick"``, ``"ballstick"`` or ``"sphere"``.
    """
    z = np.asarray(atomic_numbers, dtype=int)
    pos = np.asarray(positions, dtype=float).reshape(-1, len(z), 3)
    n = len(pos)
    start = int(min(max(start, 0), n - 1))
    caps = [str(c) for c in captions] if captions is not None else [""] * n
    if len(caps) != n:
        raise ValueError(f"{len(caps)} captions for {n} conformers")
    body, viewer = _viewer_body(z, pos, height, style)
    data, force_note = _view_data(z, pos, forces, caps, start)
    return _page(body, _controls(n, start, force_note, data.get("colour_max", 0.0)), _script(viewer, data))


_STYLES: dict[str, dict[str, Any]] = {
    "stick": {"stick": {"radius": 0.15}, "sphere": {"scale": 0.22}},
    "ballstick": {"stick": {"radius": 0.12}, "sphere": {"scale": 0.3}},
    "sphere": {"sphere": {}},
}

_CSS = (
    "body{margin:0;font-family:'DejaVu Sans',sans-serif;font-size:16px}"
    "#mv-caption{position:absolute;top:6px;left:8px;z-index:10;background:rgba(255,255,255,.85);"
    "padding:2px 6px;pointer-events:none}"
    ".mv-controls{display:flex;flex-wrap:wrap;gap:8px;align-items:center;padding:6px 4px}"
    ".mv-controls input[type=range]{flex:1 1 180px}.mv-controls button{font-size:16px;min-width:2.4em}"
    ".mv-forcekey{display:inline-flex;align-items:center;gap:4px;font-size:14px}"
    ".mv-bar{display:inline-block;width:90px;height:10px;border:1px solid #999}"
)
ARROW_LENGTH = 1.2  # angstrom: each conformer's largest force, before the length slider
# arrow colour by force magnitude, low to high (ColorBrewer YlOrRd's darker part: visible on white)
FORCE_COLOURS = ("#fed976", "#fd8d3c", "#e31a1c", "#800026")


def _viewer_body(z: np.ndarray, pos: np.ndarray, height: int, style: str) -> tuple[str, str]:
    """py3Dmol's HTML for all conformers as frames, with its CDN loader cut out, and the viewer's JS name."""
    import py3Dmol

    view = py3Dmol.view(width="100%", height=f"{height}px", js="")
    view.addModelsAsFrames("".join(xyz_block(z, p) for p in pos), "xyz")
    view.setStyle({}, _STYLES.get(style, _STYLES["stick"]))
    view.setBackgroundColor("white")
    view.zoomTo()
    body = view.write_html()
    # py3Dmol loads the script only when $3Dmolpromise is undefined: define it (_WHEN_VISIBLE) after
    # inlining the library, and drop the (empty) URL so nothing points at the network.
    body = re.sub(r"loadScriptAsync\('[^']*'\)", "Promise.resolve()", body)
    viewer = re.search(r"viewer_\d+", body)
    if viewer is None:
        raise RuntimeError("py3Dmol's HTML names no viewer_N variable; is this py3Dmol version supported?")
    return body, viewer.group(0)


def _view_data(
    z: np.ndarray, pos: np.ndarray, forces: np.ndarray | None, caps: list[str], start: int
) -> tuple[dict[str, Any], str]:
    """What the page script needs (escaped captions, force arrows scaled per conformer, their magnitudes), and the
    forces check box's label.

    ``forces[i]`` are conformer i's forces scaled so its largest is :data:`ARROW_LENGTH` angstrom; ``magnitude[i]``
    the forces' sizes in meV/angstrom, coloured on 0 .. ``colour_max`` (the molecule's largest force).
    """
    import html

    n = len(pos)
    data: dict[str, Any] = {"captions": [html.escape(c) for c in caps], "start": start, "n": n}
    force_note = ""
    if forces is not None:
        f = np.asarray(forces, dtype=float).reshape(n, len(z), 3)
        size = np.linalg.norm(f, axis=-1)  # (n, atoms) eV/angstrom
        largest = size.max(axis=1) if f.size else np.zeros(n)
        if largest.max(initial=0.0) > 0:
            scale = np.where(largest > 0, ARROW_LENGTH / np.where(largest > 0, largest, 1.0), 0.0)
            data["positions"] = np.round(pos, 3).tolist()
            data["forces"] = np.round(f * scale[:, None, None], 3).tolist()
            data["magnitude"] = np.round(mev(size), 1).tolist()
            data["colour_max"] = round(float(mev(largest.max())), 1)
            data["colours"] = list(FORCE_COLOURS)
            force_note = "QM forces"
    return data, force_note


def _force_legend(colour_max: float) -> str:
    """The arrow colour bar (0 .. the molecule's largest force) and the arrow length slider."""
    stops = ",".join(FORCE_COLOURS)
    return (
        "<span class='mv-forcekey'>0 <span class='mv-bar' style='background:linear-gradient(to right,"
        f"{stops})'></span> {colour_max:.0f} meV/Å</span>"
        "<label>length <input id='mv-scale' type='range' min='0.25' max='3' step='0.25' value='1' "
        "aria-label='arrow length' style='width:90px'></label>"
    )


def _controls(n: int, start: int, force_note: str, colour_max: float = 0.0) -> str:
    """The bar under the view: stepping buttons and slider for several conformers, the forces check box with its
    colour bar and length slider."""
    controls = []
    if n > 1:
        controls += [
            "<button id='mv-prev' title='previous conformer'>◀</button>",
            f"<input id='mv-slider' type='range' min='0' max='{n - 1}' value='{start}' aria-label='conformer'>",
            "<button id='mv-next' title='next conformer'>▶</button>",
            "<button id='mv-play' title='play through the conformers'>play</button>",
        ]
    if force_note:
        controls.append(f"<label><input id='mv-forces' type='checkbox'> {force_note}</label>")
        controls.append(_force_legend(colour_max))
    return f"<div class='mv-controls'>{''.join(controls)}</div>" if controls else ""


def _script(viewer: str, data: dict[str, Any]) -> str:
    """The page script: ``assets/molview.js`` run on the viewer once 3Dmol.js is ready, with ``data`` as one JSON
    object in which ``</`` is escaped, so no caption can end the script element."""
    payload = json.dumps(data).replace("</", "<\\/")
    return (f"<script>{_molview_source()}\n$3Dmolpromise.then(function() {{\n"
            f"const v = {viewer}, D = {payload};\nmlipdivMolview(v, D);\n}});</script>")


# The viewer starts when it first comes into view (py3Dmol's code and the page script wait on this promise): creating
# a WebGL viewer holds the browser's main thread for about 2 s where WebGL is rendered in software (a machine
# without a GPU), and a viewer below the fold would otherwise delay the first click or keystroke on the page.
_WHEN_VISIBLE = (
    "var $3Dmolpromise = new Promise(function (resolve) {"
    " if (!('IntersectionObserver' in window)) { resolve(); return; }"
    " document.addEventListener('DOMContentLoaded', function () {"
    "  var seen = new IntersectionObserver(function (entries) {"
    "   if (entries.some(function (e) { return e.isIntersecting; })) { seen.disconnect(); resolve(); } });"
    "  seen.observe(document.body); }); });"
)


def _page(body: str, controls: str, script: str) -> str:
    """The whole document: inlined 3Dmol.js, the view with its caption, the controls and the page script."""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<script>{_threedmol_source()}</script>"
        f"<script>{_WHEN_VISIBLE}</script>"
        f"<style>{_CSS}</style>"
        "</head><body><div style='position:relative'>" + body + "<div id='mv-caption'></div></div>"
        + controls + script + "</body></html>"
    )


@lru_cache(maxsize=4096)
def depiction_svg(smiles: str, width: int = 220, height: int = 140) -> str:
    """A 2D depiction of a SMILES as compact SVG text (RDKit); a grey box with '?' if RDKit cannot parse it."""
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>"
                f"<rect width='100%' height='100%' fill='#eee'/><text x='50%' y='55%' font-size='40' "
                f"text-anchor='middle'>?</text></svg>")
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    options: Any = drawer.drawOptions()  # RDKit's stubs type its attributes wrongly
    options.clearBackground = False
    options.bondLineWidth = 2
    options.fixedFontSize = 16
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    svg = re.sub(r"<\?xml[^>]*>\s*", "", svg)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    return re.sub(r">\s+<", "><", svg).strip()


def depiction_data_uri(smiles: str, width: int = 220, height: int = 140) -> str:
    """:func:`depiction_svg` as a ``data:image/svg+xml;base64,...`` URI (for table image columns)."""
    return "data:image/svg+xml;base64," + base64.b64encode(depiction_svg(smiles, width, height).encode()).decode()
