"""What each table of the report runs, and the resumable pipeline that runs it."""

from reprolib.experiments.figures import table_figure
from reprolib.experiments.runner import run_table
from reprolib.experiments.tables import TABLES, Variant, get_table

__all__ = ["TABLES", "Variant", "get_table", "run_table", "table_figure"]
