from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.contour import ContourSet
from matplotlib.image import AxesImage

from qpebench.leaderboard import plots
from qpebench.leaderboard.curves import Histogram, Reliability


def lines(fig, gid):
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


def test_performance_diagram_artists():
    points = {
        "a": {"0.1": (0.7, 0.8), "1": (0.6, 0.5)},
        "b": {"1": (0.5, 0.4), "15": (np.nan, 0.1)},
    }
    fig = plots.performance_diagram(points, "ID")
    (contours,) = [c for c in fig.axes[0].get_children() if isinstance(c, ContourSet)]
    assert len(contours.levels) == len(plots.CSI_LEVELS)
    assert len(lines(fig, "bias")) == len(plots.BIAS_LINES)
    markers = lines(fig, "point")
    assert len(markers) == 3  # the non-finite point is skipped
    assert [tuple(m.get_xydata()[0]) for m in markers] == [(0.7, 0.8), (0.6, 0.5), (0.5, 0.4)]
    assert markers[0].get_marker() == "o" and markers[1].get_marker() == "s"


def test_transfer_heatmaps_artists():
    m = pd.DataFrame([[0.5, np.nan], [0.3, 0.6]], index=["eu", "us"], columns=["eu", "us"])
    fig = plots.transfer_heatmaps({"a": m, "b": m.iloc[:1]}, "CSI@1")
    images = [c for ax in fig.axes for c in ax.get_children() if isinstance(c, AxesImage)]
    assert len(images) == 2
    texts = [t.get_text() for ax in fig.axes[:2] for t in ax.texts]
    assert texts == ["0.50", "0.30", "0.60", "0.50"]  # NaN cells carry no number


def test_skill_vs_frames_artists():
    fig = plots.skill_vs_frames({"m": [(4, 0.5, 0.4), (1, 0.3, 0.2)]}, "CSI@1")
    (id_line,) = lines(fig, "id")
    (ood_line,) = lines(fig, "ood")
    assert list(id_line.get_xdata()) == [1, 4] and list(ood_line.get_ydata()) == [0.2, 0.4]


def test_reliability_and_histogram_artists():
    c = Reliability(
        np.array([0, 0.5, 1.0]), np.array([0.2, 0.7]), np.array([0.1, 0.8]), np.array([9.0, 3.0])
    )
    fig = plots.reliability_diagram({"a": c, "b": c}, "ID")
    assert len(lines(fig, "diagonal")) == 1 and len(lines(fig, "curve")) == 2
    assert len(lines(fig, "count")) == 2
    h = Histogram(np.array([0.0, 1, 10, 100]), np.array([5.0, 3, 0]), np.array([6.0, 2, 1]))
    fig = plots.rain_histogram(h, {"a": h, "b": h}, "ID")
    (obs,) = lines(fig, "obs")
    assert len(lines(fig, "pred")) == 2
    # the bin starting at 0 mm/h is left off the log axis; fractions are of all pixels
    assert list(obs.get_data().edges) == [1, 10, 100]
    assert np.allclose(obs.get_data().values, [2 / 9, 1 / 9])


def test_example_maps_share_the_rain_scale():
    ir = np.full((4, 4), 250.0)
    truth = np.arange(16.0).reshape(4, 4)
    truth[0, 0] = np.nan
    fig = plots.example_maps(ir, truth, {"a": truth * 0.5, "b": truth * 2}, "ID")
    images = [c for ax in fig.axes for c in ax.get_children() if isinstance(c, AxesImage)]
    assert len(images) == 4
    norms = {id(im.norm) for im in images[1:]}
    assert len(norms) == 1 and images[1].norm.vmax == 30.0


def test_png_is_deterministic():
    def make():
        return plots.png_bytes(plots.performance_diagram({"a": {"1": (0.5, 0.5)}}, "x"))

    first = make()
    assert first.startswith(b"\x89PNG") and make() == first
