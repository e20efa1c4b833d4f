"""Look inside a trained model on one image, change one thing, see what moves (``notebooks/explore.ipynb``).

Every widget action of :func:`explorer` is a plain function, so a test (or a script) calls it directly:

* :mod:`~reprolib.explore.listing` — :func:`list_runs`: finished training runs under
  ``work_dir/<profile>/runs/`` (any table's), with the table rows that used them; :func:`list_splits`: the
  evaluation images (processed FS L&F / FS Static splits, of any combo) a run can be scored on;
  :func:`evaluation_split` makes one for another combo or data root; :func:`table_weights`: the weights a
  table scored an image with;
* :mod:`~reprolib.explore.scoring` — :func:`score_image`: one image through one run: the maps, the network's
  p(anomaly), the ensemble's score with given weights (or the weights the table used), a map removed, its
  AP / FPR95, the errors at the image's FPR95 threshold; :func:`what_moves`; :func:`per_image_table`: AP,
  FPR95 and anomaly size of every image of a split, worst first;
* :mod:`~reprolib.explore.figures` — :func:`image_figure` draws one scored image;
* :mod:`~reprolib.explore.widget` — :func:`explorer`, the ipywidgets panel over all of the above.

Nothing here trains: with no finished run, :func:`nothing_trained` says what to run first.
"""

from reprolib.explore.figures import PANELS, figure_png, image_figure, show_figure
from reprolib.explore.listing import (
    EVAL_KINDS,
    Selection,
    default_selection,
    evaluation_split,
    image_index,
    image_names,
    list_runs,
    list_splits,
    nothing_trained,
    resolve_dir,
    run_splits,
    table_weights,
)
from reprolib.explore.scoring import (
    MAP_LABELS,
    ImageResult,
    error_map,
    fpr95_threshold,
    image_metrics,
    load_run,
    per_image_table,
    score_image,
    split_scores,
    what_moves,
)
from reprolib.explore.widget import explorer

__all__ = ["EVAL_KINDS", "MAP_LABELS", "PANELS", "ImageResult", "Selection", "default_selection", "error_map",
           "evaluation_split", "explorer", "figure_png", "fpr95_threshold", "image_figure", "image_index",
           "image_metrics", "image_names", "list_runs", "list_splits", "load_run", "nothing_trained", "per_image_table",
           "resolve_dir", "run_splits", "score_image", "show_figure", "split_scores", "table_weights", "what_moves"]
