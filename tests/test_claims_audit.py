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
