"""Audit checks of the claim list: each claim is decided on the rows behind the report's own numbers."""

from __future__ import annotations

from reprolib.experiments.claims import CLAIMS


def test_a_claim_shown_beside_another_rows_report_number_has_a_twin_on_that_row() -> None:
    """When a claim's Report column comes from another row (``ref_a``/``ref_b``: the report's end-to-end numbers are
    its ``end_to_end_repro`` form), the same comparison is decided on that row too, so the report's own observation
    is tested on the variant that produced it."""
    decided = {(c.table, c.table_of_a, c.a, c.b, c.metric, c.expect, c.datasets) for c in CLAIMS}
    lacking = [c.id for c in CLAIMS if (c.ref_a or c.ref_b) and
               (c.table, c.table_of_a, c.ref_a or c.a, c.ref_b or c.b, c.metric, c.expect, c.datasets) not in decided]
    assert not lacking, f"decided only on a row other than the report's: {lacking}"


#: lines of the seed report that state a checkable result (Table 3's per-metric comparison, Table 1's caption on the
#: best epoch, Table 2's requirements, §5.1 on the ensemble weights): each is a claim or listed as not tested
CLAIM_LINES = {219: "Table 3 vs the paper", 186: "best model between epochs 5 and 15", 201: "63 ms inference (Table 2)",
               51: "25 hours per model", 388: "[0.75, 0.25, 0, 0] better in most circumstances",
               390: "those weights degrade FS L&F"}


def test_every_result_statement_of_the_report_is_a_claim_or_listed_as_not_tested() -> None:
    from reprolib.experiments.claims import NOT_TESTED

    cited = {n for c in (*CLAIMS, *NOT_TESTED) for n in c.source}
    missing = {n: what for n, what in CLAIM_LINES.items() if n not in cited}
    assert not missing, f"report lines stated nowhere in claim_list.py: {missing}"


def test_the_not_tested_range_statement_counts_the_report_means_within_the_papers_range(monkeypatch) -> None:
    import pandas as pd

    import reprolib.experiments.reference as reference
    from reprolib.experiments.claim_list import NOT_TESTED, _report_means_within_paper_range

    rows = [("table4", "full", "paper", "fs_static", "ap", 62.0, 5.0), ("table4", "full", "report", "fs_static", "ap", 57.0, 4.0),
            ("table4", "full", "paper", "fs_static", "fpr95", 26.0, 1.0),
            ("table4", "full", "report", "fs_static", "fpr95", 28.0, 2.0),
            ("table5", "x", "paper", "fs_static", "ap", 1.0, 0.0), ("table5", "x", "report", "fs_static", "ap", 9.0, 0.0)]
    cols = ["table", "row", "source", "dataset", "metric", "mean", "std"]
    monkeypatch.setattr(reference, "reference_numbers", lambda: pd.DataFrame(rows, columns=cols))
    assert _report_means_within_paper_range() == "1 of 2"  # 57 within 62 ± 5; 28 outside 26 ± 1; other tables ignored
    monkeypatch.undo()
    assert f"{_report_means_within_paper_range()} of the report's Table 4 means" in NOT_TESTED[0].reason
