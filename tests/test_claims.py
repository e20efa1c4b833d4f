"""Claims as data → verdicts computed from tidy results → the Claims table, the Discussion and SUMMARY.md."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reprolib.experiments.claims import (
    CLAIMS,
    NOT_TESTED,
    REPORT_SHA256,
    Claim,
    claim_verdicts,
    decide,
    load_all_results,
    report_path,
    report_sha256,
)
from reprolib.experiments.reference import reference_numbers
from reprolib.experiments.results import result_rows, save_results
from reprolib.report import build_report

ROOT = Path(__file__).resolve().parents[1]
BY_ID = {c.id: c for c in CLAIMS}


def _rows(table: str, variant: str, values: dict[str, list[float]], *, profile: str = "demo",
          ci: dict[str, list[tuple[float, float]]] | None = None) -> list[dict]:
    """Rows of one variant: ``values[dataset]`` = the metric's value per seed (same value for ap and fpr95)."""
    rows = []
    for dataset, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            extra = {}
            if ci is not None:
                lo, hi = ci[dataset][seed]
                extra = {"ap_ci_low": lo, "ap_ci_high": hi, "fpr95_ci_low": lo, "fpr95_ci_high": hi}
            rows += result_rows(table=table, variant=variant, dataset=dataset, seed=seed, profile=profile,
                                metrics={"ap": v, "fpr95": v, "auroc": 0.9}, config={"v": variant, "s": seed},
                                commit="abc", **extra)
    return rows


def _frame(*parts: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([r for p in parts for r in p])


def _one(verdicts: pd.DataFrame, claim: str, dataset: str) -> pd.Series:
    return verdicts[(verdicts["claim"] == claim) & (verdicts["dataset"] == dataset)].iloc[0]


# --- claims as data ---------------------------------------------------------------------------------------

def test_every_table_and_figure_has_claims_and_ids_are_unique() -> None:
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    assert {c.table for c in CLAIMS} == {"table4", "table5", "table6", "table7", "table8", "figures"}
    # the report's effect comes from reference.py: Table 4 ensemble claim = report full − report no_ensemble
    v = claim_verdicts(_frame(), [BY_ID["t4-ensemble-fpr95"]])
    ref = reference_numbers("table4")
    sel = ref[(ref.source == "report") & (ref.dataset == "fs_lost_and_found") & (ref.metric == "fpr95")].set_index("row")
    assert _one(v, "t4-ensemble-fpr95", "fs_lost_and_found")["report_effect"] == pytest.approx(
        sel.loc["full", "mean"] - sel.loc["no_ensemble", "mean"])
    with pytest.raises(ValueError, match="has no variant"):
        Claim("x", "x", (1,), ("q",), "table4", "full", "nonexistent", ("fs_static",), "ap", "higher")
    with pytest.raises(ValueError, match="margin"):
        Claim("x", "x", (1,), ("q",), "table4", "full", "no_ensemble", ("fs_static",), "ap", "same")


def test_cited_lines_contain_their_quotes() -> None:
    path = report_path()
    if path is None:
        pytest.skip("the MLRC report text (shared/seed/) is not on this machine; set REPROLIB_REPORT_TEXT")
    assert report_sha256(path) == REPORT_SHA256, "the report text changed: re-check every cited line number"
    lines = path.read_text(encoding="utf-8").splitlines()
    for claim in (*CLAIMS, *NOT_TESTED):
        for number, quote in zip(claim.source, claim.quote, strict=True):
            assert quote in lines[number - 1], f"{getattr(claim, 'id', claim.statement)}: line {number} lacks {quote!r}"


# --- verdicts --------------------------------------------------------------------------------------------

def test_each_verdict_comes_out() -> None:
    lf, st = "fs_lost_and_found", "fs_static"
    results = _frame(
        # FPR95 of full clearly below no_ensemble on L&F (holds), clearly above on Static (contradicted)
        _rows("table4", "full", {lf: [0.30, 0.32, 0.31], st: [0.60, 0.62, 0.61]}),
        _rows("table4", "no_ensemble", {lf: [0.50, 0.53, 0.51], st: [0.30, 0.31, 0.33]}),
        # no_uncertainty: the maps' effect flips sign from seed to seed (inconclusive)
        _rows("table4", "no_uncertainty", {lf: [0.40, 0.60, 0.55], st: [0.20, 0.40, 0.25]}),
        # no_generator_no_uncertainty is missing: the data-generator claims are "not run"
    )
    v = claim_verdicts(results, [c for c in CLAIMS if c.table == "table4"])
    assert _one(v, "t4-ensemble-fpr95", lf)["verdict"] == "holds"
    assert _one(v, "t4-ensemble-fpr95", st)["verdict"] == "contradicted"
    assert _one(v, "t4-maps-ap", lf)["verdict"] == "inconclusive"
    gen = v[v["claim"].str.startswith("t4-generator")]
    assert (gen["verdict"] == "not run").all() and (gen["n_seeds"] == 0).all()
    assert gen["reason"].str.contains("table4/no_generator_no_uncertainty").all()
    held = _one(v, "t4-ensemble-fpr95", lf)
    assert held["n_seeds"] == 3 and held["profile"] == "demo"
    assert held["ci_low"] < held["effect"] < held["ci_high"] < 0
    assert set(v["verdict"]) == {"holds", "contradicted", "inconclusive", "not run"}


def test_interval_over_seeds_is_a_paired_t_interval() -> None:
    a, b = [0.30, 0.35, 0.31], [0.50, 0.52, 0.58]
    results = _frame(_rows("table4", "full", {"fs_static": a}), _rows("table4", "no_ensemble", {"fs_static": b}))
    row = _one(claim_verdicts(results, [BY_ID["t4-ensemble-fpr95"]]), "t4-ensemble-fpr95", "fs_static")
    d = (np.array(a) - np.array(b)) * 100
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert row["effect"] == pytest.approx(d.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert np.isnan(row["image_half"])  # the rows carry no per-image intervals


def test_one_seed_uses_the_per_image_intervals_and_none_is_inconclusive() -> None:
    z = stats.norm.ppf(0.975)
    results = _frame(
        _rows("table4", "full", {"fs_static": [0.30]}, ci={"fs_static": [(0.26, 0.34)]}),
        _rows("table4", "no_ensemble", {"fs_static": [0.40]}, ci={"fs_static": [(0.37, 0.43)]}),
    )
    row = _one(claim_verdicts(results, [BY_ID["t4-ensemble-fpr95"]]), "t4-ensemble-fpr95", "fs_static")
    se_a, se_b = 8 / (2 * z), 6 / (2 * z)  # interval widths in points → standard errors
    half = z * np.hypot(se_a, se_b)
    assert row["n_seeds"] == 1 and np.isnan(row["seed_half"])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-10 - half, -10 + half))
    assert row["verdict"] == "holds"  # -10 ± 5 points
    # the same effect without any interval cannot be decided
    bare = _frame(_rows("table4", "full", {"fs_static": [0.30]}), _rows("table4", "no_ensemble", {"fs_static": [0.40]}))
    row = _one(claim_verdicts(bare, [BY_ID["t4-ensemble-fpr95"]]), "t4-ensemble-fpr95", "fs_static")
    assert row["verdict"] == "inconclusive" and "no interval" in row["reason"]


def test_no_effect_claim_and_cross_table_claim() -> None:
    st = "fs_static"
    small = _frame(_rows("table7", "full", {st: [0.300, 0.310, 0.305]}),
                   _rows("table7", "no_perceptual", {st: [0.301, 0.309, 0.306]}))
    claim = BY_ID["t7-perceptual-none-fpr95"]
    assert _one(claim_verdicts(small, [claim]), claim.id, st)["verdict"] == "holds"
    large = _frame(_rows("table7", "full", {st: [0.30, 0.31, 0.305]}), _rows("table7", "no_perceptual", {st: [0.40, 0.42, 0.41]}))
    assert _one(claim_verdicts(large, [claim]), claim.id, st)["verdict"] == "contradicted"
    # a verdict rests on one profile: full when present, never an average of demo and full
    mixed = _frame(_rows("table7", "full", {st: [0.30, 0.31]}), _rows("table7", "no_perceptual", {st: [0.301, 0.309]}),
                   _rows("table7", "full", {st: [0.30, 0.31, 0.32]}, profile="full"),
                   _rows("table7", "no_perceptual", {st: [0.50, 0.52, 0.51]}, profile="full"))
    row = _one(claim_verdicts(mixed, [claim]), claim.id, st)
    assert row["profile"] == "full" and row["n_seeds"] == 3 and row["verdict"] == "contradicted"
    assert "profiles not used: demo" in row["reason"]
    # Table 8 compares its moderate rows with Table 6's original, paired by seed
    cross = _frame(_rows("table6", "original", {st: [0.50, 0.52]}), _rows("table8", "moderate1", {st: [0.30, 0.33]}))
    row = _one(claim_verdicts(cross, [BY_ID["t8-moderate1-ap"]]), "t8-moderate1-ap", st)
    assert row["n_seeds"] == 2 and row["effect"] == pytest.approx(19.5)


def test_claims_are_decided_under_the_report_protocol_too() -> None:
    """Beside our verdict, the same comparison between the variants' report-protocol rows: the report-selection twin,
    on its @report_protocol row for a grid ensemble (the report's grid tuning), else its own row."""
    from reprolib.experiments.claims import row_under
    from reprolib.report.claims import REPORT_COLUMNS, claims_markdown, discussion_paragraphs

    lf, st = "fs_lost_and_found", "fs_static"
    results = _frame(
        _rows("table4", "full", {lf: [0.30, 0.32, 0.31], st: [0.40, 0.41, 0.42]}),
        _rows("table4", "no_ensemble", {lf: [0.50, 0.53, 0.51], st: [0.50, 0.52, 0.51]}),
        # under the report's protocol the ensemble's effect reverses on L&F; its Static rows are missing
        _rows("table4", "full@report_selection@report_protocol", {lf: [0.60, 0.62, 0.61]}),
        _rows("table4", "full@report_selection", {lf: [0.10, 0.11, 0.12]}),  # the twin's cross-fitted row: not used
        _rows("table4", "no_ensemble@report_selection", {lf: [0.30, 0.31, 0.33]}),
    )
    claim = BY_ID["t4-ensemble-fpr95"]
    ours, theirs = claim_verdicts(results, [claim]), claim_verdicts(results, [claim], protocol="report")
    assert _one(ours, claim.id, lf)["verdict"] == "holds" and _one(ours, claim.id, st)["verdict"] == "holds"
    there = _one(theirs, claim.id, lf)
    assert (there["a"], there["b"]) == ("full@report_selection@report_protocol", "no_ensemble@report_selection")
    assert there["effect"] == pytest.approx((0.61 - np.mean([0.30, 0.31, 0.33])) * 100)
    assert there["verdict"] == "contradicted" and there["protocol"] == "report"
    assert _one(theirs, claim.id, st)["verdict"] == "not run"
    assert row_under("report", "table3", "SynBoost") == "SynBoost@report_selection"  # fixed ensemble: no grid row
    assert row_under("ours", "table4", "full") == "full"
    with pytest.raises(ValueError, match="protocol must be one of"):
        row_under("mlrc", "table4", "full")
    table = claims_markdown(ours, theirs)
    assert all(c in table.splitlines()[0] for c in REPORT_COLUMNS) and "| holds | +29.7 [" in table
    paragraph = next(p for p in discussion_paragraphs(ours, report=theirs) if p.startswith("Under the report's protocol"))
    assert "of the 1 comparisons with results 0 hold, 1 is contradicted and 0 are inconclusive." in paragraph
    assert ("The verdict differs from ours for: The grid-search ensemble lowers FPR95 (Full Framework vs w/o ensemble) (FS L&F: "
            "ours holds, there contradicted).") in paragraph
    with pytest.raises(ValueError, match="same claims and datasets"):
        claims_markdown(ours, theirs.iloc[::-1])


def test_decide_boundaries() -> None:
    assert decide("higher", 0.1, 2) == "holds" and decide("higher", -2, -0.1) == "contradicted"
    assert decide("higher", 0.0, 2) == "inconclusive" and decide("lower", -2, -0.1) == "holds"
    assert decide("lower", -1, 1) == "inconclusive" and decide("higher", float("nan"), float("nan")) == "inconclusive"
    assert decide("same", -1, 1, margin=3) == "holds" and decide("same", 3.5, 5, margin=3) == "contradicted"
    assert decide("same", 2, 4, margin=3) == "inconclusive"


# --- the report decides ----------------------------------------------------------------------------------

_NUM = re.compile(r"[+-]?\d+\.\d+")


def _claims_rows(tex: str) -> list[list[str]]:
    body = tex.split("\\endlastfoot", 1)[1].split("\\end{longtable}", 1)[0]
    return [[c.strip() for c in line.rstrip("\\ ").split(" & ")] for line in body.strip().splitlines()]


def test_claims_table_numbers_equal_the_csv(tmp_path: Path) -> None:
    lf, st = "fs_lost_and_found", "fs_static"
    parts = [
        _rows("table4", "full", {lf: [0.30, 0.32, 0.31], st: [0.60, 0.62, 0.61]}),
        _rows("table4", "no_ensemble", {lf: [0.50, 0.53, 0.51], st: [0.30, 0.31, 0.33]}),
        _rows("table4", "no_uncertainty", {lf: [0.40, 0.60, 0.55], st: [0.20, 0.40, 0.25]}),
        _rows("table4", "no_generator_no_uncertainty", {lf: [0.10, 0.12, 0.11], st: [0.21, 0.22, 0.23]}),
        # the same variants under the report's protocol (report-selection twins; the grid one on its report row)
        _rows("table4", "full@report_selection@report_protocol", {lf: [0.20, 0.25, 0.21], st: [0.50, 0.40, 0.45]}),
        _rows("table4", "no_ensemble@report_selection", {lf: [0.45, 0.43, 0.52], st: [0.35, 0.30, 0.36]}),
        _rows("table4", "no_uncertainty@report_selection", {lf: [0.41, 0.42, 0.43], st: [0.25, 0.45, 0.20]}),
        _rows("table4", "no_generator_no_uncertainty@report_selection", {lf: [0.2, 0.1, 0.15], st: [0.3, 0.2, 0.1]}),
    ]
    csv = tmp_path / "results" / "table4" / "table4.csv"
    save_results([r for p in parts for r in p], csv)
    build_report(tmp_path / "results", tmp_path / "report")
    tex = (tmp_path / "report" / "generated" / "claims.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    spec = re.search(r"\\begin\{longtable\}\{(.*)\}", tex).group(1)  # one column format per column
    spec = re.sub(r">\{[^{}]*\}", "", spec)  # the ragged-right paragraph columns' >{...} prefixes
    assert len(re.findall(r"p\{[\d.]+cm\}|[lrc]", spec)) == 10, spec

    # expected values, straight from the CSV with pandas (independent of reprolib.experiments.claims)
    df = pd.read_csv(csv)
    ref = reference_numbers()
    rows = _claims_rows(tex)
    assert len(rows) == sum(len(c.datasets) for c in CLAIMS)
    expected = [(c, d) for c in CLAIMS for d in c.datasets]
    checked = 0
    for cells, (claim, dataset) in zip(rows, expected, strict=True):
        statement, line, _, _, report, ours, seeds, verdict, ours_there, verdict_there = cells
        if statement:
            assert line == ", ".join(map(str, claim.source)) and claim.id in statement
        rsel = ref[(ref.source == "report") & (ref.dataset == dataset) & (ref.metric == claim.metric)]
        ra = rsel[(rsel.table == claim.table_of_a) & (rsel.row == (claim.ref_a or claim.a))]["mean"]
        rb = rsel[(rsel.table == claim.table) & (rsel.row == (claim.ref_b or claim.b))]["mean"]
        if len(ra) and len(rb):
            assert [float(x) for x in _NUM.findall(report)] == [round(ra.iloc[0] - rb.iloc[0], 1)]
        else:
            assert report == "--"
        if claim.table != "table4":
            assert ours == ours_there == "--" and verdict == verdict_there == "not run"
            continue
        sel = df[(df.dataset == dataset) & (df.metric == claim.metric)]
        grid = {"full"}  # Table 4's grid-ensemble variant: under the report's protocol, its @report_protocol row
        for name_a, name_b, shown, said in (
                (claim.a, claim.b, ours, verdict),
                *[(f"{claim.a}@report_selection" + "@report_protocol" * (claim.a in grid),
                   f"{claim.b}@report_selection" + "@report_protocol" * (claim.b in grid), ours_there, verdict_there)]):
            a = sel[sel.variant == name_a].set_index("seed")["value"]
            b = sel[sel.variant == name_b].set_index("seed")["value"]
            d = (a - b).to_numpy() * 100
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            want = [round(x, 1) for x in (d.mean(), d.mean() - half, d.mean() + half)]
            assert [float(x) for x in _NUM.findall(shown)] == pytest.approx(want, abs=1e-9), (claim.id, dataset, name_a)
            assert said == decide(claim.expect, d.mean() - half, d.mean() + half, claim.margin)
        assert seeds == f"{len(d)} (demo)"
        checked += 1
    assert checked == sum(len(c.datasets) for c in CLAIMS if c.table == "table4")

    # the Discussion is generated from the same verdicts, and SUMMARY.md carries the same table
    verdicts = claim_verdicts(load_all_results(tmp_path / "results"))
    counts = verdicts["verdict"].value_counts()
    discussion = (tmp_path / "report" / "generated" / "discussion.tex").read_text()
    assert f"{counts.get('not run', 0)} comparisons are not run yet" in discussion
    assert "demo profile" in discussion and "Not tested here" in discussion
    summary = (tmp_path / "results" / "SUMMARY.md").read_text()
    md_rows = [r for r in summary.splitlines() if r.startswith("| ") and not r.startswith("| Claim |")]
    assert len(md_rows) == len(verdicts)
    assert [r.split(" | ")[7] for r in md_rows] == list(verdicts["verdict"])
    there = claim_verdicts(load_all_results(tmp_path / "results"), protocol="report")
    assert [r.rstrip(" |").rsplit("| ", 1)[1] for r in md_rows] == list(there["verdict"])
    assert set(there.loc[there["table"] == "table4", "verdict"]) != {"not run"}


def test_committed_summary_is_generated_from_committed_results(tmp_path: Path) -> None:
    committed = ROOT / "results" / "SUMMARY.md"
    assert committed.is_file(), "results/SUMMARY.md is generated by make report and committed"
    for csv in (ROOT / "results").glob("*/*.csv"):
        if csv.stem == csv.parent.name:
            (tmp_path / "results" / csv.parent.name).mkdir(parents=True)
            shutil.copyfile(csv, tmp_path / "results" / csv.parent.name / csv.name)
    build_report(tmp_path / "results", tmp_path / "report")
    assert (tmp_path / "results" / "SUMMARY.md").read_text() == committed.read_text()
