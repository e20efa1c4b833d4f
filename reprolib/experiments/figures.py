"""Figures for the tables: AP and FPR95 per variant (mean and spread over seeds), PNG + PDF.

matplotlib and seaborn are imported inside the two plotting functions: together they add ~1.6 s to
``import reprolib.experiments`` (``python -X importtime``; seaborn 1.6 s incl. matplotlib, pyplot alone 0.6 s),
and most callers (training, scoring, the Kaggle sessions) never draw a figure.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from reprolib.data.processed import ProcessedSplit
from reprolib.experiments.names import DATASET_NAMES, row_label, table_title
from reprolib.experiments.scoring import score_split
from reprolib.io import atomic_write
from reprolib.labels import IGNORE_INDEX
from reprolib.weights import PUBLISHED_ENV, PUBLISHED_NAME


def table_figure(results: pd.DataFrame, name: str, output_dir: str | Path | None = None):
    """Point plot of AP and FPR95 per variant and dataset; saved as ``<output_dir>/<name>.{png,pdf}``.

    Variants run down the y axis: every variant has its report-protocol and report-selection rows beside it (up to
    24 rows with long names), which a rotated x axis squeezed into an unreadable strip. Rows and data sets are named
    as in the report's tables (:func:`reprolib.experiments.names.row_label`), the protocol in brackets."""
    import matplotlib  # lazy: see the module docstring (measured import cost)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = results[results["metric"].isin(["ap", "fpr95"])].copy()
    df["value"] = df["value"] * 100
    keys = frozenset(df["variant"].astype(str))
    df["row"] = [row_label(v, keys, name) for v in df["variant"].astype(str)]
    df["dataset"] = [DATASET_NAMES.get(d, d) for d in df["dataset"]]
    order = list(dict.fromkeys(df["row"]))
    height = 1.9 + 0.3 * len(order)
    fig, axes = plt.subplots(1, 2, figsize=(11, height), sharey=True)
    for ax, metric in zip(axes, ("ap", "fpr95"), strict=True):
        sub = df[df["metric"] == metric]
        if not sub.empty:
            sns.pointplot(data=sub, y="row", x="value", hue="dataset", order=order, errorbar="sd", dodge=0.3,
                          linestyle="none", orient="h", ax=ax, legend=metric == "ap")
        ax.set_title(f"{'AP ↑' if metric == 'ap' else 'FPR95 ↓'} (%)")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.grid(axis="y", linewidth=0.3)
    profile = ", ".join(sorted(set(results["profile"].astype(str)))) if "profile" in results else "?"
    fig.suptitle(f"{table_title(name)} — profile: {profile}")
    if axes[0].get_legend() is not None:  # one legend for both panels, under them (inside, it hid points)
        handles, labels = axes[0].get_legend_handles_labels()
        axes[0].get_legend().remove()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.4 / height, 1, 1))
    if output_dir is not None:
        out = Path(output_dir)
        for ext in ("png", "pdf"):
            with atomic_write(out / f"{name}.{ext}") as fh:
                fig.savefig(fh, format=ext, dpi=120)
    return fig


def published_checkpoint(checkpoints: dict | None) -> Path | None:
    """The published dissimilarity checkpoint: ``checkpoints["dissimilarity"]``, else ``$REPROLIB_CKPT_DISSIMILARITY``."""
    value = (checkpoints or {}).get(PUBLISHED_NAME) or os.environ.get(PUBLISHED_ENV)
    return Path(value) if value else None


def published_scores(checkpoints: dict | None, split: str | Path, *, size: tuple[int, int], device: str = "cpu",
                     batch_size: int = 4, resolution: str = "processed") -> list | None:
    """p(anomaly) of the authors' published main model on a processed split (None when no checkpoint is
    given). Loaded strictly (``from_original_state_dict``, ``weights_only``) and scored like ours."""
    path = published_checkpoint(checkpoints)
    if path is None:
        return None
    # lazy: reprolib.models imports torchvision, +2.3 s on `import reprolib.experiments` (python -X importtime)
    from reprolib.models import from_original_state_dict

    model = from_original_state_dict(path, "main")
    return score_split(model, split, size=size, device=device, batch_size=batch_size,
                       resolution=resolution)["dissimilarity"]


def qualitative_figure(split: str | Path, scores: dict, path: str | Path, n: int = 3, title: str = "",
                       published: list | None = None):
    """Figure 3: image | resynthesis | H | V | D | p(anomaly) [| authors' p(anomaly)] | ground truth, for
    ``n`` images; the authors' column appears when ``published`` (their model's p(anomaly) per image) is given."""
    import matplotlib  # lazy: see the module docstring (measured import cost)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = ProcessedSplit(split, size=scores["label"][0].shape, uncertainty=True, normalize=False)
    idx = [int(i) for i in np.linspace(0, len(ds) - 1, min(n, len(ds)))]
    cols = ["image", "resynthesis", "entropy H", "perceptual V", "distance D", "p(anomaly) ours"]
    cols += ["p(anomaly) authors'"] * (published is not None) + ["ground truth"]
    fig, axes = plt.subplots(len(idx), len(cols), figsize=(2.2 * len(cols), 1.3 * len(idx) + 0.6), squeeze=False)
    for r, i in enumerate(idx):
        item = ds[i]
        panels = [item["original"].permute(1, 2, 0).numpy(), item["synthesis"].permute(1, 2, 0).numpy(),
                  scores["entropy"][i], scores["perceptual"][i], scores["distance"][i], scores["dissimilarity"][i]]
        if published is not None:
            panels.append(published[i])
        panels.append(np.where(scores["label"][i] == IGNORE_INDEX, 0.5, scores["label"][i]))
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, cmap=None if panel.ndim == 3 else "magma", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format=Path(path).suffix.lstrip("."), dpi=110)
    plt.close(fig)
    return path
