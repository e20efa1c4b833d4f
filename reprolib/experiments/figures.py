"""Figures for the tables: AP and FPR95 per variant (mean and spread over seeds), PNG + PDF."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def table_figure(results: pd.DataFrame, name: str, output_dir: str | Path | None = None):
    """Point plot of AP and FPR95 per variant and dataset; saved as ``<output_dir>/<name>.{png,pdf}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from reprolib.io import atomic_write

    df = results[results["metric"].isin(["ap", "fpr95"])].copy()
    df["value"] = df["value"] * 100
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=False)
    for ax, metric in zip(axes, ("ap", "fpr95"), strict=True):
        sub = df[df["metric"] == metric]
        if not sub.empty:
            sns.pointplot(data=sub, x="variant", y="value", hue="dataset", errorbar="sd", dodge=0.3,
                          linestyle="none", ax=ax)
        ax.set_title(f"{'AP ↑' if metric == 'ap' else 'FPR95 ↓'} (%)")
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=30)
    profile = ", ".join(sorted(set(results["profile"].astype(str)))) if "profile" in results else "?"
    fig.suptitle(f"{name} — profile: {profile}")
    fig.tight_layout()
    if output_dir is not None:
        out = Path(output_dir)
        for ext in ("png", "pdf"):
            with atomic_write(out / f"{name}.{ext}") as fh:
                fig.savefig(fh, format=ext, dpi=120)
    return fig
