"""The ipywidgets panel of ``notebooks/explore.ipynb``: every control calls a plain function of this package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as W
import pandas as pd

from reprolib.backends import COMBOS
from reprolib.experiments.names import row_label, table_title
from reprolib.explore.figures import figure_png, image_figure
from reprolib.explore.listing import (
    Selection,
    default_selection,
    evaluation_split,
    image_names,
    list_runs,
    list_splits,
    nothing_trained,
)
from reprolib.explore.scoring import MAP_LABELS, MAP_NAMES, SCORE_KEYS, ImageResult, per_image_table, score_image
from reprolib.io import PathLike, ReprolibDataError


def reported_as(used_by: str) -> str:
    """A run's ``used_by`` (``table4:full, table4:full@report_protocol``, :func:`list_runs`) as the tables name those
    rows: ``Table 4: Full Framework (corrected), Full Framework (report's grid)``; ``""`` for none."""
    rows: dict[str, list[str]] = {}
    for entry in filter(None, (e.strip() for e in used_by.split(","))):
        table, _, variant = entry.partition(":")
        rows.setdefault(table, []).append(variant)
    return "; ".join(f"{table_title(t)}: " + ", ".join(row_label(v, frozenset(vs), t) for v in vs)
                     for t, vs in rows.items())


def explorer(work_dir: PathLike = "data", profile: str | None = "demo", results_dir: PathLike | None = "results",
             selection: Selection | None = None, device: str = "cpu"):
    """The interactive panel: run / split / image pickers, ensemble-weight sliders, map removal, the ten
    panels with AP / FPR95 beside them, and the per-image table with a row picker. Returns the widget
    (an HTML message when nothing is trained). The widget's ``controls`` attribute exposes every control,
    its ``refresh()`` redraws — both plain calls, so a test drives it without a browser."""
    selection = selection or default_selection(work_dir, profile, results_dir=results_dir)
    if selection is None:
        return W.HTML(f"<b>{nothing_trained(work_dir, profile or 'demo')}</b>")
    runs = list_runs(work_dir, profile, results_dir)
    splits = list_splits(work_dir, profile)

    def run_label(r: pd.Series) -> str:
        return f"{r['run']} ({'maps' if r['maps'] else 'no maps'}; {reported_as(r['used_by']) or 'no table'})"

    def split_label(r: pd.Series) -> str:
        return f"{r['dataset']} — {r['segmentation']} / {r['resynthesis']} ({r['images']} images)"

    run_dd = W.Dropdown(options=[(run_label(r), r["path"]) for _, r in runs.iterrows()],
                        value=str(selection.run), description="run", layout=W.Layout(width="60%"))
    split_dd = W.Dropdown(options=[(split_label(r), r["path"]) for _, r in splits.iterrows()],
                          value=str(selection.split), description="images", layout=W.Layout(width="520px"))
    image_dd = W.Dropdown(options=[(n, i) for i, n in enumerate(image_names(selection.split))],
                          value=selection.image, description="image")
    table_w = W.Checkbox(value=True, description="weights the table used", indent=False)
    names = {"dissimilarity": "p(anomaly)", "entropy": "H", "perceptual": "V", "distance": "D"}
    sliders = {k: W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description=f"weight {names[k]}",
                                continuous_update=False, readout_format=".2f", style={"description_width": "120px"},
                                layout=W.Layout(width="340px")) for k in SCORE_KEYS}
    drops = {k: W.Checkbox(value=False, description=f"remove {MAP_LABELS[k]}", indent=False,
                           layout=W.Layout(width="240px")) for k in MAP_NAMES}
    picture = W.Image(format="png", layout=W.Layout(width="100%"))
    metrics = W.HTML()
    table = W.HTML()
    row = W.BoundedIntText(value=selection.image, min=0, max=max(0, len(image_names(selection.split)) - 1),
                           description="show row")
    status = W.HTML()
    state: dict[str, Any] = {"baseline": None}
    combo_dd = W.Dropdown(options=[c for c in COMBOS if c.startswith("embedded")] + [c for c in COMBOS
                                                                                   if not c.startswith("embedded")],
                          value="embedded-light", description="other combo")
    combo_btn = W.Button(description="add its images", tooltip="run this combo's backends and maps over the set "
                                                                 "(cached; embedded backends not yet trained: minutes)")

    def dataset_of(path: str) -> str:
        match = splits[splits["path"] == path]
        return str(match["dataset"].iloc[0]) if len(match) else ""

    def current_weights() -> dict[str, float] | None:
        return None if table_w.value else {k: s.value for k, s in sliders.items()}

    def refresh(*_: Any) -> ImageResult | None:
        status.value = "<i>scoring…</i>"
        try:
            res = score_image(run_dd.value, split_dd.value, image_dd.value, weights=current_weights(),
                              drop=[k for k, c in drops.items() if c.value], results_dir=results_dir,
                              dataset=dataset_of(split_dd.value), device=device)
        except (ReprolibDataError, ValueError, IndexError) as exc:
            status.value = f"<b>cannot score:</b> {exc}"
            return None
        if table_w.value:  # show the table's weights on the (inactive) sliders
            for k, s in sliders.items():
                s.value = res.weights[k]
        picture.value = figure_png(image_figure(res))
        base = state["baseline"]
        line = res.summary()
        if base is not None and base.name == res.name:
            d_ap, d_fpr = 100 * (res.metrics["ap"] - base.metrics["ap"]), 100 * (res.metrics["fpr95"] - base.metrics["fpr95"])
            line += f"<br>vs as reported: ΔAP {d_ap:+.1f} pt, ΔFPR95 {d_fpr:+.1f} pt"
        metrics.value = f"<b>AP {100 * res.metrics['ap']:.1f} % · FPR95 {100 * res.metrics['fpr95']:.1f} %</b><br>{line}"
        status.value = ""
        return res

    def reset_baseline(*_: Any) -> None:
        state["baseline"] = score_image(run_dd.value, split_dd.value, image_dd.value, results_dir=results_dir,
                                        dataset=dataset_of(split_dd.value), device=device)

    def refresh_table(*_: Any) -> pd.DataFrame:
        df = per_image_table(run_dd.value, split_dd.value, weights=current_weights(), results_dir=results_dir,
                             dataset=dataset_of(split_dd.value), device=device)
        table.value = (df.style.format({c: "{:.3f}" for c in ("ap", "fpr95", "network_ap", "network_fpr95",
                                                               "anomaly_frac")}).to_html())
        return df

    def on_image(*_: Any) -> None:
        reset_baseline()
        refresh()

    def on_split(*_: Any) -> None:
        # keep the same image (by name) when another combo's split of the same set is picked
        old = image_dd.label
        names = image_names(split_dd.value)
        image_dd.unobserve(on_image, "value")
        image_dd.options = [(n, i) for i, n in enumerate(names)]
        image_dd.value = names.index(old) if old in names else 0
        image_dd.observe(on_image, "value")
        row.max = len(names) - 1
        reset_baseline()
        refresh()
        refresh_table()

    def on_run(*_: Any) -> None:
        reset_baseline()
        refresh()
        refresh_table()

    def add_combo(*_: Any) -> Path | None:
        nonlocal splits
        status.value = f"<i>preparing {combo_dd.value}…</i>"
        try:
            path = evaluation_split(work_dir, profile or "demo", combo_dd.value, dataset_of(split_dd.value) or
                                    "fs_lost_and_found", device=device)
        except (ReprolibDataError, ValueError) as exc:
            status.value = f"<b>cannot prepare {combo_dd.value}:</b> {exc}"
            return None
        splits = list_splits(work_dir, profile)
        split_dd.options = [(split_label(r), r["path"]) for _, r in splits.iterrows()]
        split_dd.value = str(path)
        status.value = ""
        return Path(path)

    def show_row(*_: Any) -> None:
        image_dd.value = int(row.value)

    run_dd.observe(on_run, "value")
    split_dd.observe(on_split, "value")
    image_dd.observe(on_image, "value")
    table_w.observe(lambda *_: (refresh(), refresh_table()), "value")
    for s in sliders.values():
        s.observe(lambda ch: None if table_w.value else (refresh(), refresh_table()), "value")
    for c in drops.values():
        c.observe(refresh, "value")
    combo_btn.on_click(add_combo)
    show = W.Button(description="show this row")
    show.on_click(show_row)

    box = W.VBox([
        W.HTML("<h3>Look inside one model</h3>"), run_dd, W.HBox([split_dd, combo_dd, combo_btn]), image_dd,
        W.HBox([W.VBox([table_w, *sliders.values()], layout=W.Layout(width="360px")),
                W.VBox(list(drops.values()), layout=W.Layout(width="250px")),
                W.VBox([metrics, status], layout=W.Layout(flex="1"))]),
        picture,
        W.HTML("<h4>Every image of the set, worst AP first</h4>"), W.HBox([row, show]), table,
    ])
    box.controls = {"run": run_dd, "split": split_dd, "image": image_dd, "table_weights": table_w, **sliders,
                    **{f"drop_{k}": c for k, c in drops.items()}, "row": row, "show_row": show,
                   "combo": combo_dd, "add_combo": combo_btn}
    box.outputs = {"picture": picture, "metrics": metrics, "table": table, "status": status}
    box.refresh, box.refresh_table = refresh, refresh_table
    reset_baseline()
    refresh()
    refresh_table()
    return box
