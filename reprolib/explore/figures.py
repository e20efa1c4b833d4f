"""The explorer's picture of one image: ten panels side by side, as a Figure and as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from IPython.display import Image, display
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reprolib.explore.scoring import ImageResult
from reprolib.labels import IGNORE_INDEX, colorize_train

PANELS = ("image", "semantic map", "resynthesis", "H (entropy)", "D (softmax distance)", "V (perceptual)",
          "network p(anomaly)", "ensemble score", "ground truth", "errors at FPR95")


def image_figure(result: ImageResult, title: str | None = None):
    """The ten panels of one image side by side (a matplotlib Figure, no pyplot state)."""
    r = result
    gt = np.where(r.label == IGNORE_INDEX, 0.5, r.label.astype(np.float32))
    panels = [r.image, colorize_train(r.semantic), r.synthesis, r.maps["entropy"], r.maps["distance"],
              r.maps["perceptual"], r.p_anomaly, r.score, gt, r.errors]
    h, w = r.label.shape
    fig = Figure(figsize=(13, 2 * 13 / 5 * h / w + 0.9), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 5)
    for ax, name, panel in zip(axes.ravel(), PANELS, panels, strict=True):
        vmax = max(1.0, float(panel.max())) if name == "ensemble score" else 1.0
        ax.imshow(panel, cmap=None if panel.ndim == 3 else ("gray" if name == "ground truth" else "magma"),
                  vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or r.summary(), fontsize=9)
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    """PNG bytes of a figure (what the widget's image panel shows)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def show_figure(fig) -> None:
    """Display a figure inline as a PNG (works whatever matplotlib backend another cell selected)."""
    display(Image(data=figure_png(fig)))
