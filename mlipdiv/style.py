"""One look for every chart: fonts readable from the back of a lecture hall, a colour-blind-safe palette, units.

Used by the app's figures (:mod:`mlipdiv.viz`) and the study figures (:mod:`mlipdiv.analysis.figures`), hence one
layer below both.

Conversions from the library's units (eV, eV/angstrom) to display units live in :mod:`mlipdiv.units` (re-exported
here as ``EV_TO_MEV`` and ``mev`` for the charts).
"""

from __future__ import annotations

from typing import Any

from mlipdiv.names import SplitName
from mlipdiv.units import EV_TO_MEV, mev

__all__ = [
    "EV_TO_MEV",
    "FONT_SIZE",
    "PALETTE",
    "SPLIT_COLORS",
    "SPLIT_LABELS",
    "SPLIT_ORDER",
    "apply_style",
    "mev",
    "plotly_template",
]

FONT_SIZE = 18  # base font in px; titles and ticks scale from it
# Okabe & Ito (2008): distinguishable with the common colour-vision deficiencies and in greyscale print.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

SPLIT_ORDER = [SplitName.TRAIN, SplitName.VAL, SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES, "unused"]
SPLIT_LABELS = {
    SplitName.TRAIN: "training set",
    SplitName.VAL: "validation",
    SplitName.TEST_CONFORMERS: "unseen conformers",
    SplitName.TEST_MOLECULES: "unseen molecules",
    "unused": "not used",
}
SPLIT_COLORS = {
    SplitName.TRAIN: "#0072B2",
    SplitName.VAL: "#56B4E9",
    SplitName.TEST_CONFORMERS: "#E69F00",
    SplitName.TEST_MOLECULES: "#D55E00",
    "unused": "#C8C8C8",
}


FONT_FAMILY = "DejaVu Sans, Arial, sans-serif"
TEMPLATE = "mlipdiv"


def plotly_template() -> str:
    """Register mlipdiv's look (plotly_white with the fonts, palette and axes below) as a plotly template, make it
    the default of new figures, and return its name.

    Why a default template rather than the settings on each figure: plotly validates a layout update key by key,
    and setting a template and the axis fonts on every figure cost about 40 ms each, a tenth of a second per
    page of the app; a figure made under the default template costs about 1 ms. Called when a module that draws is
    imported, so in such a process every new plotly figure looks like mlipdiv's.
    """
    import plotly.graph_objects as go
    import plotly.io as pio

    if TEMPLATE not in pio.templates:
        axis = {"title_font": {"size": FONT_SIZE}, "tickfont": {"size": FONT_SIZE - 2}, "showline": True,
                "linecolor": "#444"}
        template = go.layout.Template(pio.templates["plotly_white"])
        template.layout.update(
            font={"size": FONT_SIZE, "family": FONT_FAMILY},
            title_font={"size": FONT_SIZE + 4},
            colorway=PALETTE,
            margin={"l": 70, "r": 30, "t": 70, "b": 70},
            hoverlabel={"font_size": FONT_SIZE - 2},
            xaxis=axis,
            yaxis=axis,
            annotationdefaults={"font": {"size": FONT_SIZE}},
        )
        pio.templates[TEMPLATE] = template
    pio.templates.default = TEMPLATE
    return TEMPLATE


def apply_style(fig: Any, height: int | None = 480, legend_top: bool = True) -> Any:
    """Projector-friendly layout: large fonts, white background, light grid (the template of
    :func:`plotly_template`), the height, and the legend above the plot or where the figure put it."""
    if fig.layout.template.layout.font.family != FONT_FAMILY:  # made before the template was the default
        fig.update_layout(template=plotly_template())
    update: dict[str, Any] = {"margin_t": 70 if legend_top else 50}
    if height is not None:
        update["height"] = height
    if legend_top:
        update["legend"] = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}
    fig.update_layout(**update)
    if fig.layout.annotations:  # subplot titles carry a font size of their own
        fig.update_annotations(font_size=FONT_SIZE)
    return fig
