"""Tidy results → comparison tables → LaTeX fragments → (when LaTeX is installed) a compiled PDF."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from reprolib.experiments.reference import reference_numbers
from reprolib.experiments.results import RESULT_COLUMNS, config_hash, load_results, result_rows, save_results
from reprolib.io import ReprolibDataError
from reprolib.report import build_report, comparison_table, summarize
from reprolib.report.latex import figure_name

ROOT = Path(__file__).resolve().parents[1]


def _results(tmp: Path, profile: str = "demo", report_protocol: bool = False, report_selection: bool = False) -> Path:
    rows = []
    variants = (("full", 0.40), ("no_ensemble", 0.30)) + ((("full@report_protocol", 0.50),) if report_protocol else ())
    variants += ((("full@report_selection", 0.45), ("full@report_selection@report_protocol", 0.55))
                 if report_selection else ())
    for variant, base in variants:
        for seed in (0, 1, 2):
            for ds in ("fs_lost_and_found", "fs_static"):
                rows += result_rows(table="table4", variant=variant, dataset=ds, seed=seed, profile=profile,
                                    metrics={"ap": base + 0.01 * seed, "fpr95": 0.5 - 0.01 * seed, "auroc": 0.9},
                                    config={"variant": variant, "seed": seed}, commit="abc")
    path = tmp / "results" / "table4" / "table4.csv"
    save_results(rows, path)
    return path


def test_results_roundtrip_and_provenance(tmp_path: Path) -> None:
    df = load_results(_results(tmp_path))
    assert list(df.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert len(df) == 2 * 3 * 2 * 3
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1}) != config_hash({"a": 2, "b": 2})
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    with pytest.raises(ReprolibDataError, match="missing columns"):
        load_results(bad)


def test_summary_is_mean_and_std_over_seeds(tmp_path: Path) -> None:
    s = summarize(load_results(_results(tmp_path)))
    row = s[(s.variant == "full") & (s.dataset == "fs_static") & (s.metric == "ap")].iloc[0]
    assert row["mean"] == pytest.approx(41.0) and row["std"] == pytest.approx(1.0) and row["n"] == 3


def test_comparison_table_puts_reference_beside_ours(tmp_path: Path) -> None:
    table = comparison_table(load_results(_results(tmp_path)), "table4")
    assert table.loc["full", ("fs_lost_and_found", "ap", "ours")] == "41.0 $\\pm$ 1.0"
    ref = reference_numbers("table4")
    paper = ref[(ref.row == "full") & (ref.source == "paper") & (ref.dataset == "fs_lost_and_found")
                & (ref.metric == "ap")].iloc[0]
    assert table.loc["full", ("fs_lost_and_found", "ap", "paper")] == f"{paper['mean']:.1f} $\\pm$ {paper['std']:.1f}"
    # variants we did not run still show the reference rows, with our cells marked missing
    assert table.loc["no_uncertainty", ("fs_static", "ap", "ours")] == "--"


def test_report_number_sits_beside_the_report_protocol_row(tmp_path: Path) -> None:
    table = comparison_table(load_results(_results(tmp_path, report_protocol=True)), "table4")
    ref = reference_numbers("table4")
    rep = ref[(ref.row == "full") & (ref.source == "report") & (ref.dataset == "fs_static") & (ref.metric == "fpr95")]
    cell = f"{rep.iloc[0]['mean']:.1f} $\\pm$ {rep.iloc[0]['std']:.1f}"
    assert table.loc["full@report_protocol", ("fs_static", "fpr95", "report")] == cell
    assert table.loc["full@report_protocol", ("fs_static", "ap", "ours")] == "51.0 $\\pm$ 1.0"
    # our cross-fitted row: ours only, labelled as the corrected protocol
    assert table.loc["full", ("fs_static", "fpr95", "report")] == "--"
    assert table.loc["full", ("fs_static", "ap", "ours")] == "41.0 $\\pm$ 1.0"
    assert table.loc["full", ("protocol", "", "")].startswith("corrected (cross-fitted")
    assert table.loc["full@report_protocol", ("protocol", "", "")].startswith("report's (tuned on the reported set")
    assert table.loc["no_ensemble", ("protocol", "", "")] == ""
    assert table.columns[0] == ("protocol", "", "")


def test_report_number_sits_also_beside_the_report_selection_row(tmp_path: Path) -> None:
    table = comparison_table(load_results(_results(tmp_path, report_protocol=True, report_selection=True)), "table4")
    ref = reference_numbers("table4")
    rep = ref[(ref.row == "full") & (ref.source == "report") & (ref.dataset == "fs_static") & (ref.metric == "fpr95")]
    cell = f"{rep.iloc[0]['mean']:.1f} $\\pm$ {rep.iloc[0]['std']:.1f}"
    # the report's full number: beside its grid protocol (as before) and beside both of its procedures
    assert table.loc["full@report_protocol", ("fs_static", "fpr95", "report")] == cell
    assert table.loc["full@report_selection@report_protocol", ("fs_static", "fpr95", "report")] == cell
    assert table.loc["full@report_selection@report_protocol", ("fs_static", "fpr95", "paper")] == "--"
    assert table.loc["full@report_selection", ("fs_static", "fpr95", "report")] == "--"
    assert table.loc["full@report_selection", ("fs_static", "ap", "ours")] == "46.0 $\\pm$ 1.0"
    assert table.loc["full@report_selection", ("protocol", "", "")] == (
        "report's selection (best.ckpt on FS L&F); corrected (cross-fitted halves, FPR95)")
    assert table.loc["full@report_selection@report_protocol", ("protocol", "", "")].startswith(
        "report's selection (best.ckpt on FS L&F); report's (tuned")
    assert list(table.index[:5]) == ["full", "no_ensemble", "full@report_protocol", "full@report_selection",
                                     "full@report_selection@report_protocol"]


def test_build_report_writes_fragments_and_labels_demo(tmp_path: Path) -> None:
    _results(tmp_path)
    written = build_report(tmp_path / "results", tmp_path / "report")
    tex = (tmp_path / "report" / "generated" / "table4.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "41.0 $\\pm$ 1.0" in tex
    assert "Demo profile" in (tmp_path / "report" / "generated" / "profiles.tex").read_text()
    # the box's padding and rule inside the text width (a \parbox{\linewidth} stuck 6.8 pt into the margin)
    assert "\\parbox{\\dimexpr\\linewidth-2\\fboxsep-2\\fboxrule\\relax}" in (
        tmp_path / "report" / "generated" / "profiles.tex").read_text()
    # table4.tex, the captions' shared notes (notes.tex), the claims (claims.tex, discussion.tex, results/SUMMARY.md),
    # then profiles.tex: make's target
    assert len(written) == 6 and (tmp_path / "results" / "SUMMARY.md").is_file()
    assert written[-1].name == "profiles.tex"
    # the table's caption (plain text in TableSpec) is escaped into the LaTeX caption, its shared notes printed once
    notes = (tmp_path / "report" / "generated" / "notes.tex").read_text()
    assert "report's grid row is the MLRC report's protocol" in notes and "keeps the SPADE decoder" in tex
    assert "Grid-ensemble variants appear twice" not in tex and "Section~\\ref{sec:reading}" in tex


def test_figures_keep_their_table_named_file_names(tmp_path: Path) -> None:
    csv = _results(tmp_path)
    for name in ("table4.pdf", "table4.png", "table4-fs_static.png", "curve.png"):
        (csv.parent / name).write_bytes(name.encode())
    written = build_report(tmp_path / "results", tmp_path / "report")
    gen = tmp_path / "report" / "generated"
    figures = sorted(p.name for p in written if p.suffix in (".pdf", ".png"))
    assert figures == ["table4-curve.png", "table4-fs_static.png", "table4.pdf", "table4.png"]
    assert (gen / "table4-fs_static.png").read_bytes() == b"table4-fs_static.png"
    # main.tex asks for the figures under those names (the runner writes figure3-<dataset>.png, figures.py
    # <table>.pdf): none of them doubles its table's name
    asked = sorted(asked_figures((ROOT / "report" / "main.tex").read_text()))
    assert asked and all(figure_name(n.split("-")[0].split(".")[0], n) == n for n in asked)
    assert not [n for n in asked if re.match(r"^(\w+)-\1[-.]", n)], asked


def _uncommented(tex: str) -> str:
    return re.sub(r"(?<!\\)%.*", "", tex)


def asked_inputs(main: str) -> set[str]:
    """The files under ``generated/`` that main.tex inputs (``\\gentable[..]{t}``, ``\\gen{x.tex}{..}``,
    ``\\input{generated/x}``), its comments left out."""
    main = _uncommented(main)
    names = {f"{t}.tex" for t in re.findall(r"\\gentable(?:\[[^\]]*\])?\{([^}]+)\}", main)}
    names |= set(re.findall(r"\\gen\{([^}]+\.tex)\}", main))
    names |= {f"{n}.tex" if not n.endswith(".tex") else n for n in re.findall(r"\\input\{generated/([^}]+)\}", main)}
    return {n for n in names if "#" not in n}  # not the macros' own parameters


def asked_figures(main: str) -> set[str]:
    """The figures under ``generated/`` that main.tex shows: ``\\genfig[..]{file}`` and ``\\genplot{number}{t}`` (``t.pdf``)."""
    main = _uncommented(main)
    figures = set(re.findall(r"\\genfig(?:\[[^\]]*\])?\{([^}#]+)\}", main))
    return figures | {f"{t}.pdf" for t in re.findall(r"\\genplot\{[^}]*\}\{([^}#]+)\}", main)}


def test_main_tex_inputs_every_generated_fragment_and_nothing_missing(tmp_path: Path) -> None:
    """figure3.tex and smoke-full.tex were generated but never input (Figure 3's scores and the paper-scale dry run
    were missing from the PDF), and five tables' plots were copied for nothing. Built from the committed results:
    every generated .tex is input, every figure is shown (in one format: the .png beside a .pdf is the notebooks'),
    and every file main.tex asks for is generated."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    build_report(results, tmp_path / "report")
    gen = tmp_path / "report" / "generated"
    main = (ROOT / "report" / "main.tex").read_text()
    tex = {p.name for p in gen.glob("*.tex")}
    assert tex == asked_inputs(main), (sorted(tex - asked_inputs(main)), sorted(asked_inputs(main) - tex))
    shown = asked_figures(main)
    assert all((gen / f).is_file() for f in shown), sorted(f for f in shown if not (gen / f).is_file())
    stems = {Path(f).stem for f in shown}
    unused = sorted(p.name for p in gen.iterdir() if p.suffix in (".pdf", ".png") and p.stem not in stems)
    assert not unused, unused


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="LaTeX not installed (CI installs it)")
def test_the_committed_report_compiles_without_layout_warnings(tmp_path: Path) -> None:
    """Built from the committed results, the PDF had a float too large for its page (the figures table under its
    20-line caption), overfull boxes in the claims table, ~240 underfull ones (justified 2.8 cm columns) and an
    undefined-reference risk for the new cross-references."""
    shutil.copytree(ROOT / "results", tmp_path / "results")
    (tmp_path / "report").mkdir()
    shutil.copyfile(ROOT / "report" / "main.tex", tmp_path / "report" / "main.tex")
    build_report(tmp_path / "results", tmp_path / "report")
    proc = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                          cwd=tmp_path / "report", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "report" / "main.log").read_text(errors="replace")
    for warning in ("Float too large", "Overfull \\hbox", "undefined", "Rerun to get"):
        assert warning not in log, warning
    assert log.count("Underfull") <= 5


def test_full_profile_is_not_labelled_demo(tmp_path: Path) -> None:
    _results(tmp_path, profile="full")
    build_report(tmp_path / "results", tmp_path / "report")
    assert "Demo profile" not in (tmp_path / "report" / "generated" / "profiles.tex").read_text()


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="LaTeX not installed (CI installs it)")
def test_report_compiles_with_latex(tmp_path: Path) -> None:
    _results(tmp_path)
    (tmp_path / "report").mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "report" / "main.tex", tmp_path / "report" / "main.tex")
    build_report(tmp_path / "results", tmp_path / "report")
    proc = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                          cwd=tmp_path / "report", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "report" / "main.pdf").stat().st_size > 10_000
    log = (tmp_path / "report" / "main.log").read_text(errors="replace")
    assert "generated/claims.tex" in log and "generated/discussion.tex" in log  # the Claims section was typeset


def test_latex_rows_have_as_many_cells_as_columns(tmp_path: Path) -> None:
    """The protocol cell is text: its "FS L&F" must not become a column break (pdflatex: "Extra alignment tab")."""
    from reprolib.report import write_latex_table

    # the long labels (the notebooks'; the PDF prints short ones, see the next test) contain "FS L&F"
    table = comparison_table(load_results(_results(tmp_path, report_protocol=True, report_selection=True)), "table4")
    tex = write_latex_table(table, tmp_path / "table4.tex", caption="c", label="tab:table4")
    ncols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1))
    rows = [line for line in tex.splitlines() if line.endswith("\\\\") and line.startswith("Full Framework")]
    assert len(rows) == 4 and "FS L\\&F" in rows[-1]
    for row in rows:
        assert len(re.findall(r"(?<!\\)&", row)) == ncols - 1, row


def test_table_figure_lists_every_row_down_the_y_axis(tmp_path: Path) -> None:
    """Every variant has its report-protocol and report-selection rows beside it (the figures table: 24 rows of up to
    38 characters): one row each down a y axis that grows with them, in table order, and one legend for both panels."""
    from reprolib.experiments.figures import table_figure

    few = load_results(_results(tmp_path / "few"))
    many = load_results(_results(tmp_path / "many", report_protocol=True, report_selection=True))
    small, large = table_figure(few, "table4", tmp_path / "out"), table_figure(many, "table4", tmp_path / "out")
    assert large.get_size_inches()[1] > small.get_size_inches()[1] and large.get_size_inches()[0] == 11
    names = [t.get_text() for t in large.axes[0].get_yticklabels()]
    # named as the tables name them, the protocol in brackets (no protocol column beside a figure's axis)
    assert names == ["Full Framework (corrected)", "w/o ensemble", "Full Framework (report's grid)",
                     "Full Framework (report's sel.; corrected)", "Full Framework (report's sel.; report's grid)"]
    assert [ax.get_legend() for ax in large.axes] == [None, None] and len(large.legends) == 1
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"table4.png", "table4.pdf"}


def test_a_report_build_that_fails_leaves_make_s_target_unwritten(tmp_path: Path, monkeypatch) -> None:
    """``profiles.tex`` is the Makefile's target for the report: written before the claims, a failure in them left
    it newer than every CSV, and the next ``make report`` built the PDF with missing or stale claims."""
    import reprolib.report.latex as latex

    _results(tmp_path)

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the claims failed")

    monkeypatch.setattr(latex, "write_claims", broken)
    with pytest.raises(RuntimeError, match="the claims failed"):
        build_report(tmp_path / "results", tmp_path / "report")
    assert (tmp_path / "report" / "generated" / "table4.tex").is_file()
    assert not (tmp_path / "report" / "generated" / "profiles.tex").exists()



def test_captions_print_angle_brackets_not_ot1_inverted_marks(tmp_path: Path) -> None:
    """The captions' "<variant>@report_selection" came out as "¡variant¿" (OT1 encodes < and > as ¡ and ¿)."""
    from reprolib.report.latex import latex_escape

    assert latex_escape("<variant>@x") == "\\textless{}variant\\textgreater{}@x"
    build_report(_results(tmp_path, report_selection=True).parents[1], tmp_path / "report")
    caption = re.search(r"\\caption\{(.*?)\}\n\\label", (tmp_path / "report" / "generated" / "table4.tex").read_text(),
                        re.S).group(1)
    assert "<" not in caption.replace("$", "") and ">" not in caption


def test_caption_names_the_table_its_seeds_and_only_the_sources_it_shows(tmp_path: Path) -> None:
    """The caption said "Table4: ours (mean ± std over seeds) beside the MLRC report and the paper" for every table:
    also for one-seed tables (no std) and for tables with no paper (Table 7, 8) or no reference column at all."""
    from reprolib.report.latex import table_caption

    df = load_results(_results(tmp_path))
    cap = table_caption("table4", df, comparison_table(df, "table4"), "demo")
    assert cap.startswith("Ablations (the report's Table 4): ours (profile \\texttt{demo}, 3 seeds, mean $\\pm$ std")
    assert "the MLRC report's and the paper's numbers" in cap
    one = df[df["seed"] == 0]
    cap = table_caption("table4", one, comparison_table(one, "table4", with_reference=False), "demo")
    assert "1 seed)" in cap and "std" not in cap and "paper's" not in cap and "report's numbers" not in cap
    t7 = one.assign(table="table7")
    assert "beside the MLRC report's numbers;" in table_caption("table7", t7, comparison_table(t7, "table7"), "demo")


def test_pdf_protocol_cells_are_short_with_a_legend_in_the_caption(tmp_path: Path) -> None:
    """The long protocol labels (~100 characters) were the widest column: ``\\resizebox`` shrank Table 4 to 3.7 pt type.
    The PDF prints short labels, spelt out once in the caption; the notebooks' comparison_table keeps the long ones."""
    build_report(_results(tmp_path, report_protocol=True, report_selection=True).parents[1], tmp_path / "report")
    tex = (tmp_path / "report" / "generated" / "table4.tex").read_text()
    cells = [line.split(" & ")[1] for line in tex.splitlines() if line.endswith("\\\\") and line.startswith("Full Framework")]
    assert cells == ["corrected", "report's grid", "report's sel.; corrected", "report's sel.; report's grid"]
    assert "Protocol: corrected = grid weights minimising FPR95" in tex and "(best.ckpt on FS L\\&F)" not in tex
    table = comparison_table(load_results(tmp_path / "results" / "table4" / "table4.csv"), "table4")
    assert table.loc["full", ("protocol", "", "")] == "corrected (cross-fitted halves, FPR95)"


def test_rows_are_named_as_the_report_with_the_protocol_beside_them(tmp_path: Path) -> None:
    """The rows read "full@report\\_selection@report\\_protocol" beside a protocol cell "report's sel.; report's grid"
    that the legend explains: the row now names the variant as the report does, the protocol column the rest."""
    build_report(_results(tmp_path, report_protocol=True, report_selection=True).parents[1], tmp_path / "report")
    tex = (tmp_path / "report" / "generated" / "table4.tex").read_text()
    rows = [line.split(" & ")[:2] for line in tex.splitlines() if line.endswith("\\\\") and " & " in line]
    assert ["w/o ensemble", ""] in rows and ["Full Framework", "report's sel.; report's grid"] in rows
    assert "@report" not in tex


def test_protocol_legend_explains_only_the_terms_in_the_table(tmp_path: Path) -> None:
    """Table 3 (fixed ensemble: only "report's sel.") was captioned with all three terms."""
    from reprolib.report.latex import protocol_legend

    assert protocol_legend(["", "report's sel."]) == (
        "Protocol: report's sel. = checkpoint selected on FS L&F (best.ckpt), as the report.")
    assert protocol_legend(["", ""]) == ""
    assert protocol_legend(["corrected", "report's sel.; report's grid"]).count(" = ") == 3


def test_the_full_runs_cost_and_output_are_a_table_of_the_report(tmp_path: Path) -> None:
    """The dry run's estimate of each table's full run (GPU hours, 12-h sessions, the output's GB against Kaggle's
    20 GB) was only in results/smoke-full/cost.json and the terminal: users planning a Kaggle chain read the report.
    Built from the committed cost.json, Table A2 has one row per table in the report's order, with its numbers."""
    import json

    from reprolib.experiments.tables import TABLES
    from reprolib.report.latex import cost_frame

    cost = json.loads((ROOT / "results" / "smoke-full" / "cost.json").read_text())
    frame = cost_frame(cost)
    titles = {"table4": "Table 4", "figures": "Figures 4-6", "figure3": "Figure 3"}
    assert list(frame.index) == [titles.get(n, f"Table {n[5:]}") for n in TABLES if n in cost["estimate"]]
    row, est, out = frame.loc["Table 4"], cost["estimate"]["table4"], cost["output_gb"]["table4"]
    assert (row["trainings"], row["epochs"], row["P100 sessions"]) == (est["trainings"], est["epochs"],
                                                                         est["p100_sessions_12h"])
    assert float(row["P100 h"]) == pytest.approx(est["p100_gpu_h"], abs=0.051)
    assert float(row["kept GB"]) == pytest.approx(out["measured"]["peak_kept"], abs=0.051)
    assert float(row["bound: kept GB"]) == pytest.approx(out["bound"]["peak_kept"], abs=0.051)
    shutil.copytree(ROOT / "results", tmp_path / "results")
    build_report(tmp_path / "results", tmp_path / "report")
    tex = (tmp_path / "report" / "generated" / "smoke-cost.tex").read_text()
    assert "\\label{tab:smoke-cost}" in tex and "Table 4 & 30 & 50" in tex
    assert tex.isascii()  # "×" printed as "Ö" under pdflatex's default input encoding
    assert "\\gentable[A2]{smoke-cost}" in (ROOT / "report" / "main.tex").read_text()
