"""One display name per variant key (reprolib/experiments/names.py), used by every table, figure, claim and summary."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reprolib.experiments.claims import CLAIMS
from reprolib.experiments.names import (
    PROTOCOL_LEGEND,
    PROTOCOL_SHORT,
    VARIANT_NAMES,
    base_variant,
    protocol_short,
    row_label,
    table_title,
    variant_name,
)
from reprolib.experiments.reference import reference_numbers
from reprolib.experiments.results import result_tables
from reprolib.experiments.tables import TABLES
from reprolib.report import build_report
from reprolib.report.latex import latex_escape

ROOT = Path(__file__).resolve().parents[1]


def _committed_keys() -> set[tuple[str, str]]:
    """(table, variant key) of every row of the committed results."""
    return {(csv.parent.name, str(v)) for csv in result_tables(ROOT / "results")
            for v in pd.read_csv(csv, usecols=["variant"])["variant"]}


def test_every_variant_key_shown_anywhere_has_a_display_name() -> None:
    """The tables' variants, the reference rows (Im. Resyn.++) and every committed row: none falls back on its key."""
    keys = {(name, v.name) for name, spec in TABLES.items() for v in spec.variants}
    ref = reference_numbers()
    keys |= set(zip(ref["table"], ref["row"], strict=True)) | _committed_keys()
    missing = sorted((t, k) for t, k in keys
                     if base_variant(k) not in VARIANT_NAMES and f"{t}:{base_variant(k)}" not in VARIANT_NAMES)
    assert not missing, missing


def test_display_names_are_the_report_s_wording() -> None:
    """The MLRC report's own row names (shared/seed/, Tables 4-8), one spelling of "w/o"."""
    assert variant_name("no_generator_no_uncertainty@report_selection") == "w/o data generator & w/o unc. maps"
    assert variant_name("full") == "Full Framework" and variant_name("no_ensemble") == "w/o ensemble"
    assert variant_name("no_perceptual@report_protocol") == "w/o Perceptual Difference"
    assert variant_name("image_resynthesis_pp") == "Im. Resyn.++" and variant_name("moderate2") == "Moderate2"
    assert variant_name("full", "smoke-full") == "Full Framework, w/o ensemble"  # a table's own name first
    assert variant_name("some_new_variant") == "some new variant"
    # the protocol in the short form of the tables' protocol column, which the caption legend explains
    keys = frozenset({"full", "full@report_protocol", "full@report_selection", "full@report_selection@report_protocol",
                      "no_ensemble", "no_ensemble@report_selection"})
    assert [protocol_short(k, keys) for k in sorted(keys)] == [
        "corrected", "report's grid", "report's sel.; corrected", "report's sel.; report's grid", "", "report's sel."]
    assert row_label("no_ensemble@report_selection", keys) == "w/o ensemble (report's sel.)"
    assert set(PROTOCOL_SHORT.values()) == set(PROTOCOL_LEGEND)
    assert table_title("table4") == "Table 4" and table_title("figures") == "Figures 4-6"


def test_report_names_every_row_and_caption_through_the_one_mapping(tmp_path: Path) -> None:
    """Built from the committed results, the rows read "no generator no uncertainty@report\\_selection",
    "full@report\\_protocol" (the keys, underscores as spaces), the captions "'w/o uncertainty maps'", "'w/o H'",
    "<variant>@report_selection rows", the claims "(full vs w/o ensemble)", "(original vs moderate1)". Every row
    now is its display name with its protocol cell, and every name a caption or claim quotes is one of them."""
    shutil.copytree(ROOT / "results", tmp_path / "results")
    build_report(tmp_path / "results", tmp_path / "report")
    gen = tmp_path / "report" / "generated"
    names = {latex_escape(n) for n in VARIANT_NAMES.values()}
    for csv in result_tables(tmp_path / "results"):
        table = csv.parent.name
        tex = (gen / f"{table}.tex").read_text()
        body = tex.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
        rows = [line.split(" & ") for line in body.strip().splitlines()]
        keys = frozenset(v for t, v in _committed_keys() if t == table)
        expected = {latex_escape(variant_name(k, table)) for k in keys}
        reference = {latex_escape(variant_name(k, table)) for k in reference_numbers(table)["row"]}
        assert expected <= {r[0] for r in rows} <= expected | reference, table
        assert "@report" not in tex and "<variant>" not in tex and "textless" not in tex, table
        shown = {r[1] for r in rows if len(r) > 2 and not re.match(r"^[\d.-]", r[1])}
        assert shown <= {latex_escape(protocol_short(k, keys)) for k in keys} | {""}, (table, shown)
        caption = re.search(r"\\caption\{(.*?)\}\n\\label", tex, re.S).group(1)
        for quoted in re.findall(r"'([^']+)'", caption):
            if quoted.startswith(("w/o", "W/O")):
                assert quoted in names, (table, quoted)
    claims, summary = (gen / "claims.tex").read_text(), (tmp_path / "results" / "SUMMARY.md").read_text()
    for claim in CLAIMS:
        pair = f"({variant_name(claim.a, claim.table_of_a)} vs {variant_name(claim.b, claim.table)})"
        assert claim.shown.endswith(pair) and pair in summary, claim.id
        assert latex_escape(pair).replace("\\&", "") in claims.replace("\\&", ""), claim.id
    assert "@report_selection" not in summary and "(table4," not in summary


@pytest.mark.parametrize("used_by, label", [
    ("table4:full, table4:full@report_protocol, table7:full",
     "Table 4: Full Framework (corrected), Full Framework (report's grid); Table 7: Full Framework"),
    ("", ""),
])
def test_the_explorer_names_the_rows_a_run_reports_as_the_tables_do(used_by: str, label: str) -> None:
    """The run picker listed "table4:full@report_protocol"."""
    from reprolib.explore.widget import reported_as

    assert reported_as(used_by) == label
