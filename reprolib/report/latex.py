"""Tables for the LaTeX report, generated from ``results/`` (never typed by hand).

``comparison_table`` puts our numbers (mean ± std over seeds) beside the paper's and the MLRC report's —
for grid-ensemble rows, the report's number sits beside our ``@report_protocol`` row (the same procedure),
and our cross-fitted row is labelled as the corrected protocol;
``write_latex_table`` exports with pandas' Styler (booktabs rules). ``build_report`` writes every
fragment under ``report/generated/`` for ``report/main.tex`` to ``\\input``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from reprolib.experiments.names import DATASET_NAMES as PLAIN_DATASET_NAMES
from reprolib.experiments.names import (
    PROTOCOL_SHORT,
    REPORT_PROTOCOL,
    REPORT_SELECTION,
    protocol_legend,
    protocol_short,
    table_title,
    variant_name,
)
from reprolib.experiments.reference import reference_numbers
from reprolib.experiments.results import load_results, result_tables
from reprolib.experiments.tables import GRID_NOTE, SELECTION_NOTES, TABLES
from reprolib.io import read_json, write_bytes, write_text
from reprolib.report.claims import write_claims
from reprolib.report.tex import latex_escape

DATASET_NAMES = {k: v.replace("&", "\\&") for k, v in PLAIN_DATASET_NAMES.items()}
METRIC_NAMES = {"ap": "AP $\\uparrow$", "fpr95": "FPR95 $\\downarrow$", "auroc": "AUROC $\\uparrow$"}


def _fmt(mean: float, std: float | None, digits: int = 1) -> str:
    if pd.isna(mean):
        return "--"
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} $\\pm$ {std:.{digits}f}"


def summarize(results: pd.DataFrame, metrics: tuple[str, ...] = ("ap", "fpr95")) -> pd.DataFrame:
    """Mean and std over seeds (in %) per variant × dataset × metric; ``n`` = number of seeds."""
    df = results[results["metric"].isin(metrics)]
    g = df.groupby(["variant", "dataset", "metric"], sort=False)["value"]
    out = pd.DataFrame({"mean": g.mean() * 100, "std": g.std(ddof=1) * 100, "n": g.count()}).reset_index()
    out.loc[out["n"] < 2, "std"] = float("nan")
    return out


#: the ``protocol`` column of :func:`comparison_table`
PROTOCOL_LABELS = {
    "report": "report's (tuned on the reported set, AP - FPR95)",
    "corrected": "corrected (cross-fitted halves, FPR95)",
    "": "",
}
PROTOCOL_COLUMN = ("protocol", "", "")


#: prefix of the ``protocol`` cell of a row trained with the report's checkpoint selection
SELECTION_LABEL = "report's selection (best.ckpt on FS L&F)"

#: the ``protocol`` cells in the PDF: the long labels made the column as wide as the numbers, and ``\resizebox`` shrank
#: the tables to 4-6 pt type; the caption's legend (:func:`protocol_legend`) spells them out once. The short forms are
#: :data:`reprolib.experiments.names.PROTOCOL_SHORT`, which the figures' row names use too.
SHORT_PROTOCOL = {PROTOCOL_LABELS["report"]: PROTOCOL_SHORT["report"],
                  PROTOCOL_LABELS["corrected"]: PROTOCOL_SHORT["corrected"], SELECTION_LABEL: PROTOCOL_SHORT["selection"]}


def short_protocol(label: str) -> str:
    """The PDF's short form of a ``protocol`` cell of :func:`comparison_table`."""
    for full, short in SHORT_PROTOCOL.items():
        label = label.replace(full, short)
    return label


def _protocol(variant: str, variants: set[str]) -> str:
    """The long ``protocol`` cell of a row: :func:`reprolib.experiments.names.protocol_short`, each term spelt out."""
    long = {short: full for full, short in SHORT_PROTOCOL.items()}
    return "; ".join(long[term] for term in protocol_short(variant, variants).split("; ") if term)


def _selection_reference(ref: pd.DataFrame, mine: set[str]) -> pd.DataFrame:
    """The report's numbers again beside our ``<variant>@report_selection`` row (its ``@report_protocol`` row
    when there is one: both of the report's procedures), since the report selected its checkpoints that way."""
    report = ref[ref["source"] == "report"]
    frames = []
    for variant in dict.fromkeys(report["variant"]):
        for row in (f"{variant}{REPORT_SELECTION}{REPORT_PROTOCOL}", f"{variant}{REPORT_SELECTION}"):
            if row in mine:
                frames.append(report[report["variant"] == variant].assign(variant=row))
                break
    return pd.concat(frames, ignore_index=True) if frames else report.iloc[:0]


def comparison_table(
    results: pd.DataFrame, table: str, metrics: tuple[str, ...] = ("ap", "fpr95"), with_reference: bool = True,
    names: bool = False,
) -> pd.DataFrame:
    """Wide table: one row per variant; a ``protocol`` column, then (dataset, metric, source) with source
    ours/report/paper.

    Where we report a variant under both grid protocols, the paper's and the report's numbers go on the
    ``<variant>@report_protocol`` row (the procedure they came from), not on our cross-fitted row; the
    report's number is shown again on a ``<variant>@report_selection`` row (the report's checkpoint selection).
    ``names``: the rows named as the report names them (:func:`reprolib.experiments.names.variant_name`, the notebooks'
    view; the protocol column tells a variant's rows apart) instead of by their ``variant`` keys.
    """
    ours = summarize(results, metrics).assign(source="ours")
    frames = [ours]
    mine = set(ours["variant"])
    if with_reference:
        ref = reference_numbers(table)
        ref = ref[ref["metric"].isin(metrics)].rename(columns={"row": "variant"})
        again = _selection_reference(ref, mine)
        ref["variant"] = [f"{v}{REPORT_PROTOCOL}" if f"{v}{REPORT_PROTOCOL}" in mine else v for v in ref["variant"]]
        for r in (ref, again):
            frames.append(r[["variant", "dataset", "metric", "mean", "std", "source"]])
    long = pd.concat(frames, ignore_index=True)
    long["cell"] = [_fmt(m, s) for m, s in zip(long["mean"], long["std"], strict=True)]
    wide = long.pivot_table(index="variant", columns=["dataset", "metric", "source"], values="cell",
                            aggfunc="first")
    order = list(dict.fromkeys(list(ours["variant"]) + list(long["variant"])))
    wide = wide.reindex(order)
    src_order = {"ours": 0, "report": 1, "paper": 2}
    cols = sorted(wide.columns, key=lambda c: (c[0], metrics.index(c[1]) if c[1] in metrics else 9,
                                               src_order.get(c[2], 9)))
    wide = wide[cols].fillna("--")
    wide.insert(0, PROTOCOL_COLUMN, [_protocol(str(v), mine) for v in wide.index])
    if names:
        wide.index = pd.Index([variant_name(str(v), table) for v in wide.index], name="variant")
    return wide


def write_latex_table(df: pd.DataFrame, path: str | Path, caption: str, label: str, table: str | None = None) -> str:
    """Export a (possibly multi-column) frame to a booktabs LaTeX table, atomically; returns the text.

    Rows are named as the report names them (:func:`reprolib.experiments.names.variant_name`, ``table``'s own names
    first); the protocol column, when there is one, tells a variant's rows apart."""
    pretty = df.copy()
    if isinstance(pretty.columns, pd.MultiIndex):
        pretty.columns = pd.MultiIndex.from_tuples(
            [tuple(DATASET_NAMES.get(p, METRIC_NAMES.get(p, p)) for p in c) for c in pretty.columns]
        )
    # "no_generator_no_uncertainty@report_selection" → "w/o data generator \& w/o unc. maps" (+ "report's sel." in
    # the protocol column, which the caption's legend explains)
    pretty.index = [latex_escape(variant_name(str(i), table)) for i in pretty.index]
    if PROTOCOL_COLUMN in pretty.columns or "protocol" in pretty.columns:  # plain text ("FS L&F"), unlike the numbers
        col = PROTOCOL_COLUMN if PROTOCOL_COLUMN in pretty.columns else "protocol"
        pretty[col] = [latex_escape(str(v)) for v in pretty[col]]
    tex = pretty.style.to_latex(
        caption=caption, label=label, hrules=True, position="htbp", position_float="centering",
        multicol_align="c", column_format="l" + "c" * len(pretty.columns),
    )
    # Wide comparison tables: shrink to the text width rather than overflow the margin (never enlarge a narrow one),
    # and to half the text height, so that a long table with its long caption still fits one page (report/main.tex
    # loads adjustbox)
    tex = tex.replace("\\begin{tabular}",
                      "\\begin{adjustbox}{max width=\\linewidth, max totalheight=0.5\\textheight}\n\\begin{tabular}", 1)
    tex = tex.replace("\\end{tabular}", "\\end{tabular}\n\\end{adjustbox}", 1)
    write_text(path, tex)
    return tex


def figure_name(table: str, file_name: str) -> str:
    """Name under ``report/generated/`` of a figure file of ``results/<table>/``: the tables name their figures
    after themselves (``table4.pdf``, ``figure3-fs_static.png``), kept as is; any other gets the table's name
    as a prefix, so two tables' figures cannot collide."""
    if Path(file_name).stem == table or file_name.startswith(f"{table}-"):
        return file_name
    return f"{table}-{file_name}"


def _report_ref(name: str) -> str:
    """Which of the report's tables or figures ``results/<name>/`` reproduces ("Table 4", "Figures 4--6"), or ""."""
    title = table_title(name)
    return "" if title == name else title.replace("-", "--")


#: the paper-scale dry run (``make smoke-full``, :mod:`reprolib.experiments.smoke`): its title and what it is
SMOKE_TITLE = "Paper-scale dry run (make smoke-full)"
SMOKE_NOTE = ("Every stage of the full profile at the paper's resolutions on a handful of images of the embedded "
              "world at 1024x2048: the real Original combo (DeepWV3Plus + CC-FPSE), precompute, the width-1.0 VGG16 "
              "dissimilarity network trained for a few steps at 256x512, scoring at 1024x2048. It shows that the "
              "full profile runs and measures its cost; its numbers are not results. '{none}' is the network's "
              "p(anomaly) alone, '{fixed}' the shipped fixed ensemble [0.75, 0.25, 0, 0] over (p, H, V, D).")


def _smoke_caption(results: pd.DataFrame) -> str:
    """What the dry run is, and which weights its rows used (random unless the checkpoints were given)."""
    text = SMOKE_NOTE.format(none=variant_name("full", "smoke-full"), fixed=variant_name("full+fixed_ensemble",
                                                                                          "smoke-full"))
    for column, what in (("backend_weights", "backend weights"), ("imagenet_weights", "ImageNet weights")):
        if column in results:
            text += f" {what[0].upper()}{what[1:]}: {'; '.join(sorted(set(results[column].astype(str))))}."
    return text


def table_caption(name: str, results: pd.DataFrame, table: pd.DataFrame, profile: str) -> str:
    """The opening of a results table's caption: what it is (its title and the report's number), how many seeds
    our cells average (a single seed has no std), and only the reference columns the table actually has."""
    spec = TABLES.get(name)
    title = latex_escape(spec.title if spec and spec.title else SMOKE_TITLE if name == "smoke-full" else name)
    ref = _report_ref(name)
    head = f"{title} (the report's {ref})" if ref else title
    per_variant = summarize(results).groupby("variant")["n"].max()
    lo, hi = (int(per_variant.min()), int(per_variant.max())) if len(per_variant) else (0, 0)
    n = f"{lo}" if lo == hi else f"{lo} to {hi}"
    seeds = f"{n} seed{'' if hi == 1 else 's'}" + (", mean $\\pm$ std over seeds" if hi > 1 else "")
    sources = {c[2] for c in table.columns if len(c) == 3 and c[2] in ("report", "paper")}
    beside = " and ".join(w for s, w in (("report", "the MLRC report's"), ("paper", "the paper's")) if s in sources)
    caption = f"{head}: ours (profile \\texttt{{{profile}}}, {seeds})"
    caption += f" beside {beside} numbers" if beside else ", with no number printed by the report or the paper to set beside it"
    return caption + "; AP and FPR95 in \\%."


#: the notes every grid / report-selection table's caption carries (:data:`TableSpec.caption`, as the notebooks show
#: it): the PDF prints them once (``generated/notes.tex``, "Reading the tables"), where seven captions of 20 lines each
#: repeated them and the longest table no longer fit its page
SHARED_NOTES = (GRID_NOTE, SELECTION_NOTES)
#: what a caption whose shared notes were moved out says instead (LaTeX)
SEE_NOTES = "Protocols and checkpoint selection: Section~\\ref{sec:reading}."


def own_caption(caption: str) -> tuple[str, bool]:
    """A table's caption without :data:`SHARED_NOTES` (plain text), and whether it had any."""
    had = False
    for note in SHARED_NOTES:
        had |= note in caption
        caption = caption.replace(note, " ")
    return " ".join(caption.split()), had


def notes_latex() -> str:
    """``generated/notes.tex``: the shared notes of the tables' captions, once."""
    return "% generated by reprolib.report.build_report — do not edit\n" + "\n\n".join(
        latex_escape(n.replace("this table's", "each table's")) for n in SHARED_NOTES) + "\n"


def cost_frame(cost: dict[str, Any]) -> pd.DataFrame:
    """One row per table of ``make smoke-full``'s ``cost.json``: the ``full`` run's trainings, epochs, GPU hours and
    12-h Kaggle sessions (P100; T4 as a range), and its output in GB (the peak over the chain, and what a session's
    export keeps of it under its budget; bound: images and maps as incompressible PNGs)."""
    rows = {}
    order = {name: i for i, name in enumerate(TABLES)}  # the report's order, not the file's
    for name, e in sorted(cost["estimate"].items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
        out = cost.get("output_gb", {}).get(name, {})
        m, b = out.get("measured", {}), out.get("bound", {})
        t4h, t4s = e["t4_gpu_h"], e["t4_sessions_12h"]
        rows[table_title(name)] = {
            "trainings": e["trainings"], "epochs": e["epochs"], "P100 h": f"{e['p100_gpu_h']:.1f}",
            "P100 sessions": e["p100_sessions_12h"], "T4 sessions": f"{t4s[0]}--{t4s[1]}",
            "T4 h": f"{t4h[0]:.0f}--{t4h[1]:.0f}",
            "output peak GB": f"{m['peak']:.1f}" if m else "--", "kept GB": f"{m['peak_kept']:.1f}" if m else "--",
            "bound: kept GB": f"{b['peak_kept']:.1f}" if b else "--"}
    return pd.DataFrame.from_dict(rows, orient="index")


def cost_latex(cost: dict[str, Any]) -> str:
    """``generated/smoke-cost.tex``: :func:`cost_frame` as a LaTeX table with its caption."""
    frame = cost_frame(cost)
    frame.index = [latex_escape(str(i)) for i in frame.index]
    budget = next((o.get("budget_gb") for o in cost.get("output_gb", {}).values()), None)
    t4 = cost["estimate_assumptions"]["t4_over_p100"]
    caption = latex_escape(
        "Each table's full run, estimated from the dry run (reprolib/experiments/cost.py): trainings and epochs as "
        "the report (the report-selection runs included; epochs they share with their model are not trained "
        "again), GPU hours from the report's 30 min a P100 epoch, 12-h Kaggle sessions; T4 = P100 × "
        f"{t4[0]:.2f}–{t4[1]:.2f}, an assumption. Output: the work folder on the real data from the item sizes "
        "measured in the dry run, at its peak over the chain, and what a session's export keeps"
        + (f" under its {budget:g} GB budget" if budget else "")
        + " (prediction PNGs, generated data whose split is done and finished runs' optimiser state left out); "
        "bound: photographs, resyntheses and maps as incompressible PNGs.")
    tex = frame.style.to_latex(caption=caption, label="tab:smoke-cost", hrules=True, position="htbp",
                               position_float="centering", column_format="l" + "r" * len(frame.columns))
    # ten columns: shrunk to the text width, as write_latex_table's tables
    tex = tex.replace("\\begin{tabular}", "\\begin{adjustbox}{max width=\\linewidth}\n\\begin{tabular}", 1)
    return tex.replace("\\end{tabular}", "\\end{tabular}\n\\end{adjustbox}", 1)


def build_report(results_dir: str | Path = "results", report_dir: str | Path = "report") -> list[Path]:
    """Write ``report/generated/<table>.tex`` for every ``results/<table>/<table>.csv`` and copy its figures
    (named by :func:`figure_name`).

    Also writes ``generated/profiles.tex`` stating which profile produced the numbers, so demo-profile
    results are labelled as such in the PDF, and the claims (``generated/claims.tex``, ``generated/discussion.tex``,
    ``results_dir/SUMMARY.md``; see :mod:`reprolib.report.claims`). Returns the files written.
    """
    results_dir, report_dir = Path(results_dir), Path(report_dir)
    gen = report_dir / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    profiles: dict[str, set[str]] = {}
    for csv in result_tables(results_dir):
        name = csv.parent.name
        df = load_results(csv)
        profiles[name] = set(df["profile"].astype(str))
        prof = ", ".join(sorted(profiles[name]))
        table = comparison_table(df, name)
        caption = table_caption(name, df, table, prof)
        if table[PROTOCOL_COLUMN].astype(bool).any():
            table[PROTOCOL_COLUMN] = [short_protocol(v) for v in table[PROTOCOL_COLUMN]]
            caption += " " + latex_escape(protocol_legend(list(table[PROTOCOL_COLUMN])))
        else:  # an empty column says nothing (the dry run's rows: no grid ensemble, no report selection)
            table = table.drop(columns=[PROTOCOL_COLUMN])
        if name in TABLES and TABLES[name].caption:
            own, shared = own_caption(TABLES[name].caption)
            caption += " " + latex_escape(own) + (" " + SEE_NOTES if shared else "")
        elif name == "smoke-full":
            caption += " " + latex_escape(_smoke_caption(df))
        out = gen / f"{name}.tex"
        write_latex_table(table, out, caption=caption, label=f"tab:{name}", table=name)
        written.append(out)
        for fig in sorted(csv.parent.glob("*.pdf")) + sorted(csv.parent.glob("*.png")):
            dst = gen / figure_name(name, fig.name)
            write_bytes(dst, fig.read_bytes())  # atomic, as every other file of the report
            written.append(dst)
    requirements = results_dir / "table2" / "table2.csv"
    if requirements.is_file():  # Table 2: measured here, beside the report's figures (not a results table)
        req = pd.read_csv(requirements)
        device = ", ".join(sorted(set(req["device"].astype(str))))
        frame = req.set_index("quantity")[["report", "ours", "unit"]].rename(columns={"report": "report (P100)"})
        frame["ours"] = [("--" if pd.isna(v) else f"{v:.3g}") for v in frame["ours"]]
        frame.index = [latex_escape(str(i)) for i in frame.index]
        frame.index.name = None
        caption = latex_escape(f"Computational requirements, measured on {device} (profile "
                               f"{', '.join(sorted(set(req['profile'].astype(str))))}) beside the report's "
                               "figures (Kaggle Tesla P100).")
        out = gen / "table2.tex"
        tex = frame.style.to_latex(caption=caption, label="tab:table2", hrules=True, position="htbp",
                                   position_float="centering", column_format="lccc")
        write_text(out, tex)
        written.append(out)
    cost = results_dir / "smoke-full" / "cost.json"
    if cost.is_file():  # the dry run's estimate of each table's full run: what planning a Kaggle chain needs
        out = gen / "smoke-cost.tex"
        write_text(out, cost_latex(read_json(cost)))
        written.append(out)
    lines = ["% generated by reprolib.report.build_report — do not edit"]
    demo = sorted(n for n, p in profiles.items() if "demo" in p)
    if demo:
        lines.append(
            "\\noindent\\fbox{\\parbox{\\dimexpr\\linewidth-2\\fboxsep-2\\fboxrule\\relax}{"
            "\\textbf{Demo profile.} The results of "
            + ", ".join(demo).replace("_", "\\_")
            + " were produced with the \\texttt{demo} profile on the embedded procedurally generated world "
            "(small images, reduced network width, few training steps). They exercise the full pipeline "
            "but are not comparable with the paper's numbers.}}"
        )
    write_text(gen / "notes.tex", notes_latex())
    written.append(gen / "notes.tex")
    written += write_claims(results_dir, gen)  # the claims table, the Discussion and results/SUMMARY.md
    # last: it is make's target for the whole report, so a build that fails before it is rerun, not trusted
    write_text(gen / "profiles.tex", "\n".join(lines) + "\n")
    written.append(gen / "profiles.tex")
    return written
