"""The LaTeX report: tables and figures generated from ``results/``."""

from reprolib.report.latex import build_report, comparison_table, summarize, write_latex_table

__all__ = ["build_report", "comparison_table", "summarize", "write_latex_table"]
