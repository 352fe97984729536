"""Leaderboard figures (matplotlib, Agg, no pyplot): deterministic sizes, fonts and bytes.

Each function takes plain numbers (means over seeds, pooled curves) and returns a
:class:`~matplotlib.figure.Figure`; :func:`png_bytes` renders one. Artists carry a ``gid``
(``"point"``, ``"bias"``, ``"id"``, ``"ood"``, ``"curve"``, ``"diagonal"``, ``"obs"``,
``"pred"``) so that tests and readers can find them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import RcKeyType

from .curves import Histogram, Reliability

F64 = npt.NDArray[np.float64]

#: Fixed style: the bundled DejaVu font, fixed sizes, a fixed SVG hash salt.
STYLE: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "legend.fontsize": 8.0,
    "svg.hashsalt": "qpebench",
    "image.interpolation": "nearest",
    "figure.dpi": 100.0,
    "savefig.dpi": 100.0,
}
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
THRESHOLD_MARKERS = {"0.1": "o", "1": "s", "5": "^", "10": "D", "15": "v"}
CSI_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BIAS_LINES = (0.3, 0.5, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0)
DPI = 100


def color(i: int) -> str:
    """The ``i``-th colour of the fixed cycle."""
    return COLORS[i % len(COLORS)]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg, fixed DPI, no software tag, so reruns give equal bytes)."""
    buf = io.BytesIO()
    with mpl.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def performance_diagram(
    points: Mapping[str, Mapping[str, tuple[float, float]]], title: str
) -> Figure:
    """POD against success ratio (1 − FAR) with CSI contours and frequency-bias lines.

    Args:
        points: Model label → threshold (``"1"``) → (success ratio, POD); one marker each,
            colour by model and shape by threshold. Non-finite points are skipped.
        title: Axes title.
    """
    with mpl.rc_context(STYLE):
        fig = _figure(7.6, 5.4)
        ax = fig.add_subplot()
        sr, pod = np.meshgrid(np.linspace(0.01, 1, 200), np.linspace(0.01, 1, 200))
        csi = 1 / (1 / sr + 1 / pod - 1)
        contours = ax.contour(sr, pod, csi, levels=CSI_LEVELS, colors="#999999", linewidths=0.7)
        contours.set_gid("csi")
        ax.clabel(contours, fmt="%.1f", fontsize=7)
        for b in BIAS_LINES:
            end = (1.0, b) if b <= 1 else (1 / b, 1.0)
            ax.plot([0, end[0]], [0, end[1]], ls="--", lw=0.7, color="#bbbbbb", gid="bias")
            ax.annotate(f"{b:g}", end, fontsize=7, color="#777777", ha="left", va="bottom")
        for i, by_threshold in enumerate(points.values()):
            for t, (x, y) in by_threshold.items():
                if math.isfinite(x) and math.isfinite(y):
                    marker = THRESHOLD_MARKERS.get(t, "*")
                    ax.plot([x], [y], ls="", marker=marker, ms=6, color=color(i), gid="point")
        models = [
            Line2D([], [], ls="", marker="o", color=color(i), label=label)
            for i, label in enumerate(points)
        ]
        shapes = [
            Line2D([], [], ls="", marker=m, color="black", label=f"≥ {t} mm/h")
            for t, m in THRESHOLD_MARKERS.items()
        ]
        fig.legend(handles=models, loc="outside right upper", title="model", frameon=False)
        fig.legend(handles=shapes, loc="outside right lower", title="threshold", frameon=False)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="success ratio (1 − FAR)", ylabel="POD")
        ax.set_title(title)
        ax.set_aspect("equal")
    return fig


def transfer_heatmaps(matrices: Mapping[str, pd.DataFrame], metric: str) -> Figure:
    """One heatmap per model: train domain (rows) × test domain (columns), value annotated.

    Args:
        matrices: Model label → float frame (index = train domains, columns = test domains,
            NaN = no record for that pair).
        metric: Score name for the colour bar, e.g. ``"CSI@1"``.
    """
    with mpl.rc_context(STYLE):
        n = len(matrices)
        ncols = min(n, 3)
        nrows = math.ceil(n / ncols)
        largest = max(max(m.shape) for m in matrices.values())
        side = max(2.6, 0.75 * largest + 1.2)
        fig = _figure(side * ncols + 0.8, side * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        cmap = mpl.colormaps["viridis"].with_extremes(bad="#dddddd")
        image = None
        for ax, (label, matrix) in zip(axes.flat, matrices.items(), strict=False):
            values = matrix.to_numpy(dtype=float)
            image = ax.imshow(values, cmap=cmap, vmin=0, vmax=1, aspect="equal")
            for (r, c), v in np.ndenumerate(values):
                if math.isfinite(v):
                    ink = "white" if v < 0.5 else "black"
                    ax.text(c, r, f"{v:.2f}", ha="center", va="center", color=ink, fontsize=8)
            ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns], rotation=30)
            ax.set_yticks(range(values.shape[0]), [str(i) for i in matrix.index])
            ax.set(xlabel="test domain", ylabel="train domain", title=label)
        for ax in list(axes.flat)[n:]:
            ax.set_axis_off()
        if image is not None:
            fig.colorbar(image, ax=axes, label=metric, shrink=0.8)
    return fig


def skill_vs_frames(
    series: Mapping[str, Sequence[tuple[int, float, float]]], metric: str
) -> Figure:
    """A score against the number of input frames: ID solid, mean over OOD sets dashed.

    Args:
        series: Model label → (frames, ID value, OOD value) points.
        metric: Score name for the y axis.
    """
    with mpl.rc_context(STYLE):
        fig = _figure(6.0, 4.0)
        ax = fig.add_subplot()
        frames_seen: set[int] = set()
        for i, (label, pts) in enumerate(series.items()):
            pts = sorted(pts)
            x = [p[0] for p in pts]
            frames_seen.update(x)
            ax.plot(x, [p[1] for p in pts], "-o", color=color(i), label=f"{label} ID", gid="id")
            ax.plot(x, [p[2] for p in pts], "--s", color=color(i), label=f"{label} OOD", gid="ood")
        ax.set_xticks(sorted(frames_seen))
        ax.set(xlabel="input frames", ylabel=metric)
        ax.legend(frameon=False, ncols=2)
        ax.grid(alpha=0.3)
    return fig


def reliability_diagram(curves: Mapping[str, Reliability], title: str) -> Figure:
    """Observed frequency against forecast probability, the diagonal, and the counts below.

    Args:
        curves: Model label → pooled reliability table.
        title: Title of the upper panel.
    """
    with mpl.rc_context(STYLE):
        fig = _figure(5.5, 6.0)
        top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
        top.plot([0, 1], [0, 1], color="#888888", lw=0.8, ls=":", gid="diagonal")
        for i, (label, c) in enumerate(curves.items()):
            top.plot(
                c.forecast_mean,
                c.observed_frequency,
                "-o",
                ms=4,
                color=color(i),
                label=label,
                gid="curve",
            )
            bottom.stairs(c.count, c.bins, color=color(i), gid="count")
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency", title=title)
        top.legend(frameon=False, loc="upper left")
        bottom.set(yscale="log", xlabel="forecast probability", ylabel="count")
    return fig


def rain_histogram(obs: Histogram, preds: Mapping[str, Histogram], title: str) -> Figure:
    """Fraction of pixels per rain-rate bin, truth (black) and each model, on log axes.

    Bins starting at 0 mm/h cannot sit on a log axis and are left out (stated on the x label).

    Args:
        obs: A histogram whose ``obs`` counts are the truth.
        preds: Model label → histogram whose ``pred`` counts are the model's.
        title: Axes title.
    """
    with mpl.rc_context(STYLE):
        fig = _figure(6.0, 4.0)
        ax = fig.add_subplot()

        def draw(h: Histogram, counts: F64, **style: object) -> None:
            keep = h.edges[:-1] > 0
            total = counts.sum()
            frac = counts[keep] / total if total > 0 else counts[keep]
            ax.stairs(frac, h.edges[np.append(keep, True)], baseline=None, **style)  # type: ignore[arg-type]

        draw(obs, obs.obs, color="black", lw=1.6, label="truth", gid="obs")
        for i, (label, h) in enumerate(preds.items()):
            draw(h, h.pred, color=color(i), lw=1.0, label=label, gid="pred")
        ax.set(xscale="log", yscale="log", ylabel="fraction of pixels")
        ax.set_xlabel("rain rate (mm/h; bins above 0)")
        ax.set_title(title)
        ax.legend(frameon=False)
    return fig


def example_maps(ir: F64, truth: F64, preds: Mapping[str, F64], title: str) -> Figure:
    """IR10.8, truth and each model's prediction side by side; one colour scale for rain.

    Args:
        ir: IR10.8 brightness temperature (K), 2-D.
        truth: Radar rain rate (mm/h, NaN = no data), same shape.
        preds: Model label → predicted rain rate (mm/h), same shape.
        title: Figure title (test set and time).
    """
    with mpl.rc_context(STYLE):
        n = 2 + len(preds)
        ncols = min(n, 5)
        nrows = math.ceil(n / ncols)
        fig = _figure(2.4 * ncols + 1.0, 2.5 * nrows + 0.3)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        rain = [truth, *preds.values()]
        top = max([float(np.nanmax(a)) for a in rain if np.isfinite(a).any()] + [1.0])
        norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=top)
        cmap = mpl.colormaps["Blues"].with_extremes(bad="#dddddd")
        flat = list(axes.flat)
        ir_image = flat[0].imshow(ir, cmap="gray_r")
        flat[0].set_title("IR10.8")
        fig.colorbar(ir_image, ax=flat[0], label="K", shrink=0.8)
        rain_image = None
        for ax, (label, field) in zip(flat[1:], [("truth", truth), *preds.items()], strict=False):
            rain_image = ax.imshow(np.ma.masked_invalid(field), cmap=cmap, norm=norm)
            ax.set_title(label)
        for ax in flat:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in flat[n:]:
            ax.set_axis_off()
        if rain_image is not None:
            fig.colorbar(rain_image, ax=flat[1:n], label="mm/h", shrink=0.8)
        fig.suptitle(title)
    return fig
