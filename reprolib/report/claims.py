"""The report decides: the claims table and the Discussion, generated from the verdicts (never typed).

:func:`write_claims` (called by :func:`reprolib.report.build_report`) writes ``generated/claims.tex`` (a
booktabs longtable via pandas), ``generated/discussion.tex`` and ``results/SUMMARY.md`` (the same table in
Markdown, for readers on GitHub). Every sentence of the Discussion is built from
:func:`reprolib.experiments.claims.claim_verdicts`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from reprolib.experiments.claims import CLAIMS, NOT_TESTED, Claim, NotTested, claim_verdicts, load_all_results
from reprolib.experiments.names import DATASET_NAMES, PROTOCOL_SHORT, table_title
from reprolib.experiments.profiles import PROFILES
from reprolib.io import write_text
from reprolib.report.tex import LATEX_SPECIAL

COLUMNS = ["Claim", "Line", "Dataset", "Expect", "Report", "Ours [95% CI]", "Seeds", "Verdict"]
#: the same comparison under the report's protocol (reprolib.experiments.claims.row_under), beside ours
REPORT_COLUMNS = ["Report's protocol [95% CI]", "Verdict there"]
#: the tables' protocol cell of the rows a comparison under the report's protocol uses (its grid row where the variant
#: has one, else its report-selection row)
_REPORT_ROWS = (f"each variant's {PROTOCOL_SHORT['selection']} row ({PROTOCOL_SHORT['selection']}; "
                f"{PROTOCOL_SHORT['report']} for a grid ensemble)")
#: the report's table, with the claims' comparison signs in math mode
_TEX_SPECIAL = {**LATEX_SPECIAL, "<": r"$<$", ">": r"$>$", "|": r"$|$", "−": "$-$"}


#: a paragraph column set ragged right (``array``'s ``>{...}``; report/main.tex loads array): justified in 2.8 cm, the
#: statements were stretched ("The      grid-search") with ~240 underfull-box warnings
_RAGGED = r">{\raggedright\arraybackslash}p{"


def tex_escape(text: str) -> str:
    """Plain text → LaTeX text (the claims' statements contain ``&`` and ``<``)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _num(x: float, tex: bool) -> str:
    s = f"{x:+.1f}"
    return f"${s}$" if tex else s


def _expect(row: pd.Series, tex: bool) -> str:
    if row["expect"] == "same":
        return f"$|\\Delta| < {row['margin']:g}$" if tex else f"within ±{row['margin']:g}"
    return ("$>0$" if tex else "> 0") if row["expect"] == "higher" else ("$<0$" if tex else "< 0")


def _effect(r: pd.Series, tex: bool) -> str:
    if pd.isna(r["effect"]):
        return "--" if tex else "—"
    if math.isfinite(r["ci_low"]):
        return f"{_num(r['effect'], tex)} [{_num(r['ci_low'], tex)}, {_num(r['ci_high'], tex)}]"
    return f"{_num(r['effect'], tex)} (no interval)"


def claims_frame(verdicts: pd.DataFrame, tex: bool, report: pd.DataFrame | None = None) -> pd.DataFrame:
    """The displayed claims table: one row per claim × dataset, the statement on a claim's first row only;
    ``report``: the same comparisons under the report's protocol (same order), as two more columns."""
    esc: Callable[[str], str] = tex_escape if tex else (lambda s: str(s).replace("|", "\\|"))
    if report is not None and (report["claim"].tolist(), report["dataset"].tolist()) != (
            verdicts["claim"].tolist(), verdicts["dataset"].tolist()):
        raise ValueError("the report-protocol verdicts must list the same claims and datasets, in the same order")
    out, last = [], None
    for i, (_, r) in enumerate(verdicts.iterrows()):
        first = r["claim"] != last
        last = r["claim"]
        statement = f"{r['statement']} [{r['claim']}]"
        ours = _effect(r, tex)
        out.append({
            "Claim": esc(statement) if (first or not tex) else "",
            "Line": r["source"] if (first or not tex) else "",
            "Dataset": esc(DATASET_NAMES[r["dataset"]]),
            "Expect": _expect(r, tex),
            "Report": _num(r["report_effect"], tex) if pd.notna(r["report_effect"]) else ("--" if tex else "—"),
            "Ours [95% CI]": ours,
            "Seeds": f"{int(r['n_seeds'])} ({esc(r['profile'])})" if r["n_seeds"] else ("--" if tex else "—"),
            "Verdict": r["verdict"],
        })
        if report is not None:
            there = report.iloc[i]
            out[-1].update({REPORT_COLUMNS[0]: _effect(there, tex), REPORT_COLUMNS[1]: there["verdict"]})
    return pd.DataFrame(out, columns=COLUMNS + (REPORT_COLUMNS if report is not None else []))


def claims_latex(verdicts: pd.DataFrame, report: pd.DataFrame | None = None) -> str:
    """The Claims section's table: a booktabs longtable (pandas Styler, as the other tables)."""
    df = claims_frame(verdicts, tex=True, report=report)
    df.columns = [tex_escape(c) for c in df.columns]
    caption = ("Claims of the paper and of the MLRC report, each a comparison $a - b$ between two rows of a table "
               "(in percentage points; AP higher and FPR95 lower is better). \\emph{Line}: line of the report text; "
               "\\emph{Expect}: the sign the claim predicts; \\emph{Report}: the same difference in the report's own "
               "numbers; \\emph{Ours}: mean over seeds with a 95\\,\\% interval combining seeds (paired t) and "
               "images (per-run bootstrap over recording sequences). The verdict is computed from the interval."
               + (" \\emph{Report's protocol}: the same comparison between the variants' rows under the MLRC report's "
                  "protocol (checkpoint selected on FS L\\&F, grid weights tuned on the reported set: "
                  f"{tex_escape(_REPORT_ROWS)}), with its verdict." if report is not None else ""))
    tex = df.style.hide(axis="index").to_latex(
        caption=caption, label="tab:claims", hrules=True, environment="longtable",
        # the two intervals wrap inside their columns: with both protocols' verdicts the table must still fit the text
        column_format=("P{2.8cm}P{0.65cm}llrP{1.65cm}llP{1.65cm}l" if report is not None
                       else "P{4.6cm}P{0.9cm}llrlll").replace("P{", _RAGGED),
    )
    # ~60 rows of 8 columns: smaller type and padding keep the table inside the text width
    return "{\\footnotesize\\setlength{\\tabcolsep}{3pt}\n" + tex + "}\n"


def claims_markdown(verdicts: pd.DataFrame, report: pd.DataFrame | None = None) -> str:
    """The same table as GitHub Markdown (written by hand: no ``tabulate`` dependency)."""
    df = claims_frame(verdicts, tex=False, report=report)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _datasets(rows: pd.DataFrame) -> str:
    return " and ".join(DATASET_NAMES[d] for d in rows["dataset"])


def _listing(verdicts: pd.DataFrame, verdict: str) -> str:
    parts = []
    for _, rows in verdicts[verdicts["verdict"] == verdict].groupby("claim", sort=False):
        effects = ", ".join(f"{_num(e, False)} [{_num(lo, False)}, {_num(hi, False)}]"
                            for e, lo, hi in zip(rows["effect"], rows["ci_low"], rows["ci_high"], strict=True))
        parts.append(f"{rows['statement'].iloc[0]} in {table_title(rows['table'].iloc[0])} ({_datasets(rows)}: {effects})")
    return "; ".join(parts)


def _against(verdicts: pd.DataFrame, source: str) -> list[str]:
    """Comparisons where the report's (or the paper's) own numbers go against the direction stated."""
    out = []
    for _, r in verdicts.iterrows():
        e = r[f"{source}_effect"]
        if pd.isna(e):
            continue
        wrong = (abs(e) >= r["margin"]) if r["expect"] == "same" else (e <= 0 if r["expect"] == "higher" else e >= 0)
        if wrong:
            out.append(f"{r['statement']} on {DATASET_NAMES[r['dataset']]} ({_num(e, False)})")
    return out


def _profile_sentence(verdicts: pd.DataFrame) -> str:
    ran = verdicts[verdicts["verdict"] != "not run"]
    if ran.empty:
        return ""
    profiles = sorted({p.strip() for ps in ran["profile"] for p in ps.split(",")})
    seeds = sorted(set(ran["n_seeds"].astype(int)))
    n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
    text = f"These verdicts rest on the {' and '.join(profiles)} profile{'s' if len(profiles) > 1 else ''} with {n} seeds."
    if "demo" in profiles:
        d = PROFILES["demo"]
        steps = d.training.get("max_steps")
        text += (f" The demo profile trains a dissimilarity network of width {d.model.get('width')} for {steps} steps on the "
                 f"embedded synthetic world at {d.size[0]}x{d.size[1]}: a verdict there says whether the claimed direction "
                 "shows up at this small scale on synthetic data. It neither confirms nor refutes the paper, whose setting "
                 "only the full profile on the real datasets reproduces.")
    text += (" Inconclusive means that the interval (seeds and test images together) still contains zero, or for a "
             "no-effect claim crosses the stated margin: the data at hand cannot tell, which is not evidence against "
             "the claim.")
    return text


def _count(counts: pd.Series, verdict: str, one: str, many: str) -> str:
    n = int(counts.get(verdict, 0))
    return f"{n} comparison{'' if n == 1 else 's'} {one if n == 1 else many}"


def _under_report(verdicts: pd.DataFrame, report: pd.DataFrame) -> str:
    """The Discussion's paragraph on the report's protocol: its counts, and where its verdict differs from ours."""
    ran = report[report["verdict"] != "not run"]
    if ran.empty:
        return (f"Under the report's protocol no comparison has results yet (the tables' {PROTOCOL_SHORT['selection']} "
                "rows are missing).")
    counts = ran["verdict"].value_counts()

    def n(verdict: str, one: str, many: str) -> str:
        k = int(counts.get(verdict, 0))
        return f"{k} {one if k == 1 else many}"

    text = (f"Under the report's protocol ({_REPORT_ROWS}: checkpoint selected on FS L&F, grid "
            f"weights tuned on the very set reported), of the {len(ran)} comparisons with results "
            f"{n('holds', 'holds', 'hold')}, {n('contradicted', 'is contradicted', 'are contradicted')} and "
            f"{n('inconclusive', 'is inconclusive', 'are inconclusive')}.")
    differ = [f"{o['statement']} ({DATASET_NAMES[o['dataset']]}: ours {o['verdict']}, there {r['verdict']})"
              for (_, o), (_, r) in zip(verdicts.iterrows(), report.iterrows(), strict=True)
              if r["verdict"] != "not run" and o["verdict"] != "not run" and o["verdict"] != r["verdict"]]
    text += (" The verdict differs from ours for: " + "; ".join(differ) + "." if differ
             else " No verdict differs from ours.")
    return text


def discussion_paragraphs(verdicts: pd.DataFrame, not_tested: Sequence[NotTested] = NOT_TESTED,
                          report: pd.DataFrame | None = None) -> list[str]:
    """The Discussion, as plain-text paragraphs generated from the verdicts (``report``: the same comparisons under
    the report's protocol)."""
    counts = verdicts["verdict"].value_counts()
    n_claims = verdicts["claim"].nunique()
    missing = sorted(set(verdicts.loc[verdicts["verdict"] == "not run", "table"]))
    ran = verdicts[verdicts["verdict"] != "not run"]
    paras = []
    if ran.empty:
        paras.append(f"No claim has results yet: the {n_claims} claims ({len(verdicts)} comparisons, one per claim and "
                     f"dataset) wait for {', '.join(missing)}.")
    else:
        text = (f"Of the {n_claims} claims ({len(verdicts)} comparisons, one per claim and dataset), "
                f"{ran['claim'].nunique()} have results: {_count(counts, 'holds', 'holds', 'hold')}, "
                f"{_count(counts, 'contradicted', 'is contradicted', 'are contradicted')} and "
                f"{_count(counts, 'inconclusive', 'is inconclusive', 'are inconclusive')}.")
        if missing:
            text += (f" {_count(counts, 'not run', 'is not run yet', 'are not run yet')}: {', '.join(missing)} "
                     f"{'has' if len(missing) == 1 else 'have'} no results.")
        paras.append(text)
    for verdict, head in (("holds", "What held (effect a - b in points, 95% interval)"),
                          ("contradicted", "What our numbers contradict"),
                          ("inconclusive", "What our numbers cannot decide")):
        listing = _listing(verdicts, verdict)
        if listing:
            paras.append(f"{head}: {listing}.")
    if report is not None:
        paras.append(_under_report(verdicts, report))
    for source, who in (("report", "The report's own numbers"), ("paper", "The paper's own numbers")):
        against = _against(verdicts, source)
        if against:
            paras.append(f"{who} already go against the stated direction for: " + "; ".join(against) + ".")
    prof = _profile_sentence(verdicts)
    if prof:
        paras.append(prof)
    if not_tested:
        paras.append("Not tested here: " + "; ".join(
            f"{n.statement} (line{'s' if len(n.source) > 1 else ''} {', '.join(map(str, n.source))}): {n.reason}"
            for n in not_tested) + ".")
    return paras


def summary_markdown(verdicts: pd.DataFrame, results: pd.DataFrame, report: pd.DataFrame | None = None) -> str:
    """``results/SUMMARY.md``: provenance, the claims table and the Discussion, in Markdown."""
    lines = ["# Claims scorecard", "",
             "_Generated by `make report` (`reprolib.report.build_report`) from `results/*/*.csv`; do not edit._", ""]
    if not results.empty:
        lines.append("Results used:")
        lines.append("")
        for table, rows in results.groupby("table", sort=True):
            seeds = ",".join(str(s) for s in sorted(set(rows["seed"].astype(int))))
            lines.append(f"- `{table}`: profile {', '.join(sorted(set(rows['profile'].astype(str))))}, seeds {seeds}, "
                         f"commit {', '.join(sorted(set(rows['commit'].astype(str))))}")
        lines.append("")
    lines += ["Each claim compares two rows a and b of a table; effects are a - b in percentage points (AP higher and "
              "FPR95 lower is better). *Line*: line of the MLRC report text (`shared/seed/`); *Expect*: the sign the "
              "claim predicts; *Report*: the same difference in the report's own numbers; *Ours*: mean over seeds with "
              "a 95% interval combining seeds (paired t) and test images (per-run bootstrap over recording sequences)."
              + (" *Report's protocol*: the same comparison between the variants' rows under the MLRC report's "
                 "protocol (checkpoint selected on FS L&F, grid weights tuned on the reported set: "
                 f"{_REPORT_ROWS}), with its verdict." if report is not None else ""), "",
              claims_markdown(verdicts, report), "## Discussion", ""]
    for p in discussion_paragraphs(verdicts, report=report):
        lines += [p, ""]
    return "\n".join(lines)


def write_claims(results_dir: str | Path, generated_dir: str | Path, claims: Sequence[Claim] = CLAIMS) -> list[Path]:
    """Write ``claims.tex`` and ``discussion.tex`` into ``generated_dir`` and ``SUMMARY.md`` into ``results_dir``."""
    results_dir, gen = Path(results_dir), Path(generated_dir)
    results = load_all_results(results_dir)
    verdicts = claim_verdicts(results, claims)
    report = claim_verdicts(results, claims, protocol="report")
    header = "% generated by reprolib.report.claims — do not edit\n"
    write_text(gen / "claims.tex", header + claims_latex(verdicts, report))
    write_text(gen / "discussion.tex", header + "\n\n".join(
        tex_escape(p) for p in discussion_paragraphs(verdicts, report=report)) + "\n")
    write_text(results_dir / "SUMMARY.md", summary_markdown(verdicts, results, report))
    return [gen / "claims.tex", gen / "discussion.tex", results_dir / "SUMMARY.md"]
