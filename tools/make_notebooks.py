"""(Re)write the thin notebooks under notebooks/ — parameters cell, calls into reprolib, a table, a figure (and explore).

Run after changing a notebook's shape: `python tools/make_notebooks.py` (`--out DIR` writes elsewhere; the tests
compare a fresh run with the committed notebooks). Notebooks are written without outputs, and a notebook whose
text is unchanged is not rewritten, so its modification time (which `make` reads) stays.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

from reprolib.experiments.tables import TABLES
from reprolib.io import write_text

ROOT = Path(__file__).resolve().parent.parent

NOTEBOOKS = {
    "table3": "Table 3 — main results on FS Lost & Found and FS Static (full framework with ensemble)",
    "table4": "Table 4 — ablations: full / w/o ensemble / w/o uncertainty maps / w/o data generator & maps",
    "table5": "Table 5 — end-to-end learned ensemble vs grid search (with the reproduction's cancelling form)",
    "table6": "Table 6 — generalisability: original vs light segmentation + resynthesis",
    "table7": "Table 7 — uncertainty-map ablation: w/o H, w/o D, w/o V",
    "table8": "Table 8 — segmentation / resynthesis strength: moderate1 and moderate2 mixes",
    "figures": "Figures 4–6 — encoder (VGG16 / ResNet18 / ResNet101), learning rate, SELU vs ReLU",
    "figure3": "Figure 3 — qualitative predictions",
}

PARAMS = '''# Parameters (Papermill overrides these; see `make help`)
profile = "demo"        # "demo": embedded world, small images, minutes on CPU; "full": the paper's settings
data_root = None        # None → the embedded world; else a folder holding cityscapes/, lostandfound/, fishyscapes/
checkpoints = None      # real weights, dict name → path: the backends' (with data_root), 'dissimilarity' (Figure 3)
seeds = None            # None → the table's seeds in this profile (Table 4: 0-2 in demo, 0-4 in full; others: 0)
max_epochs = None       # None → full: the table's epochs (50 or 25); demo: its step budget
max_time = None         # e.g. "00:11:00:00": the whole session's budget (every stage stops cleanly before it)
device = "auto"         # "auto" | "cpu" | "cuda"
work_dir = "data"       # world, backends, processed splits, runs (reused across tables and reruns)
output_dir = "results/{name}"
wandb_mode = "offline"  # "online" only if you set WANDB_API_KEY yourself
precision = "32-true"    # fp32 as the original; "bf16-mixed" / "16-mixed" only on request (GPU)
eval_resolution = None  # None → the table's protocol ("benchmark" for Table 3, else "processed" as the original)
report_selection = True # False: leave out the <variant>@report_selection rows (the report's checkpoint selection)
kaggle = False          # set by the Kaggle bundle
'''


# The figures are written as PNG files (matplotlib's Agg backend, no pyplot state); show those files inline.
SHOW_FIGURES = '''from pathlib import Path
from IPython.display import Image, display
for png in sorted(Path(output_dir).glob("{name}*.png")):
    display(Image(filename=str(png)))'''

SHOW_GALLERY = '''from pathlib import Path
from IPython.display import Image, display
gallery = Path(work_dir) / profile / "world" / "gallery.png"
if data_root is None and gallery.is_file():
    display(Image(filename=str(gallery)))'''


def build(name: str, title: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\nRuns end to end with `make {name}`; resumes where a "
                                      "previous run stopped. Logic lives in `reprolib.experiments`."),
        nbformat.v4.new_code_cell(PARAMS.replace("{name}", name), metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from reprolib.experiments import run_table, table_figure\n"
            "from reprolib.report import comparison_table\n\n"
            f"results = run_table(\n    {name!r}, profile=profile, data_root=data_root, checkpoints=checkpoints,\n"
            "    seeds=seeds, max_epochs=max_epochs, max_time=max_time, device=device, work_dir=work_dir,\n"
            "    output_dir=output_dir, wandb_mode=wandb_mode, kaggle=kaggle, eval_resolution=eval_resolution,\n"
            "    precision=precision, report_selection=report_selection,\n)"
        ),
        nbformat.v4.new_markdown_cell("## Ours beside the MLRC report and the paper (AP, FPR95 in %)"
                                      + (f"\n\n{TABLES[name].caption}" if TABLES[name].caption else "")),
        nbformat.v4.new_code_cell(f"comparison_table(results, {name!r}, names=True)"),
        nbformat.v4.new_code_cell(f"table_figure(results, {name!r}, output_dir);\n{SHOW_FIGURES.format(name=name)}"),
        nbformat.v4.new_markdown_cell("## The data: the embedded world's gallery (when no `data_root` is given)"),
        nbformat.v4.new_code_cell(SHOW_GALLERY),
    ]
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating leaves unchanged notebooks byte-identical
        cell.id = f"{name}-{i}"
    return nb


TABLE2_PARAMS = '''# Parameters (Papermill overrides these; see `make help`)
profile = "demo"        # sizes (image, network width, batch) of this profile are timed
data_root = None        # None → the embedded world; else a folder holding cityscapes/, lostandfound/, fishyscapes/
checkpoints = None      # real backend checkpoints for the original combo: dict name → path
device = "auto"         # "auto" | "cpu" | "cuda"
work_dir = "data"
output_dir = "results/table2"
n_images = 3            # images timed through the precompute backends
repeat = 3              # timed repetitions (after one warm-up); the median is reported
precision = "32-true"   # the training step's: "32-true" (as the original) | "bf16-mixed" | "16-mixed"
'''


def build_table2() -> nbformat.NotebookNode:
    """Table 2 (computational requirements): measured here, beside the report's figures."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Table 2 — computational requirements, measured on this machine\n\nRuns with `make table2`. "
            "Precompute time per image (segmentation + H + D; resynthesis + V), training time per epoch, peak GPU "
            "and CPU memory and inference time per image of the dissimilarity network, beside the report's figures "
            "(Kaggle P100). Logic lives in `reprolib.experiments.compute`."),
        nbformat.v4.new_code_cell(TABLE2_PARAMS, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from reprolib.experiments.compute import REPORT_HARDWARE, computational_requirements, hardware\n\n"
            "table2 = computational_requirements(\n    profile=profile, data_root=data_root, checkpoints=checkpoints,"
            " work_dir=work_dir,\n    output_dir=output_dir, device=device, n_images=n_images, repeat=repeat,\n"
            "    precision=precision,\n)\n"
            "print('ours:', hardware())\nprint('report:', REPORT_HARDWARE)\ntable2"),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"table2-{i}"
    return nb


EXPLORE_PARAMS = '''# Parameters (Papermill overrides these)
profile = "demo"          # the profile whose runs to look at (what `make table4` trained)
work_dir = "data"         # where the tables keep runs and processed splits
results_dir = "results"   # the tables' CSVs: which run each row reports, and its ensemble weights
run = None                # a run folder name from the list below; None → the first one a table reports
dataset = "fs_lost_and_found"  # or "fs_static"
image = 0                 # index or name of the image in that set
other_run = None          # a run to compare on the same image; None → the w/o-maps model when trained
other_combo = None        # e.g. "embedded-light": the image through another segmentation/resynthesis combo
device = "cpu"
'''


def build_explore() -> nbformat.NotebookNode:
    """``explore.ipynb``: look inside one trained model on one image (logic in ``reprolib.explore``)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb.cells = [
        md("# Explore: look inside a trained model, change one thing, see what moves\n\n"
           "Needs a finished table (e.g. `make table4`, about 10–14 minutes on 2 CPU cores in the demo profile, "
           "set-up included); trains nothing. "
           "Logic lives in `reprolib.explore`: every widget action is a plain function there."),
        code(EXPLORE_PARAMS, metadata={"tags": ["parameters"]}),
        code("from reprolib import explore as X\n\n"
             "work_dir, results_dir = X.resolve_dir(work_dir), X.resolve_dir(results_dir)\n"
             "runs = X.list_runs(work_dir, profile, results_dir)\n"
             "runs if len(runs) else print(X.nothing_trained(work_dir, profile))"),
        code("X.list_splits(work_dir, profile)"),
        code("sel = X.default_selection(work_dir, profile, run, dataset, image, results_dir)\nsel"),
        md("## Interactive: pick a run, a set and an image; move the ensemble weights, remove a map\n\n"
           "Panels: image, semantic map, resynthesis, H, D, V, the network's p(anomaly), the ensemble's score, "
           "ground truth and the errors at this image's FPR95 threshold (white: found, blue: missed, red: false "
           "alarm). Below: every image of the set, worst AP first; type a row and *show this row*."),
        code("X.explorer(work_dir, profile, results_dir, selection=sel, device=device) if sel else None"),
        md("## The same as plain calls: one image, what moves when one thing changes"),
        code("if sel:\n    X.show_figure(X.image_figure(X.score_image(sel.run, sel.split, sel.image, "
             "results_dir=results_dir, dataset=sel.dataset, device=device)))"),
        code("X.what_moves(sel, other_run=other_run, other_combo=other_combo, work_dir=work_dir, profile=profile,\n"
             "             results_dir=results_dir, device=device) if sel else None"),
        md("## Every image of the set, worst first — and the worst one"),
        code("table = X.per_image_table(sel.run, sel.split, results_dir=results_dir, dataset=sel.dataset, "
             "device=device) if sel else None\ntable"),
        code("if sel:\n    X.show_figure(X.image_figure(X.score_image(sel.run, sel.split, int(table.index[0]), "
             "results_dir=results_dir, dataset=sel.dataset, device=device)))"),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"explore-{i}"
    return nb


def write_if_changed(nb: nbformat.NotebookNode, path: Path) -> bool:
    """Write ``nb`` to ``path`` (as ``nbformat.write`` would, atomically) unless the file already holds exactly
    that text; returns whether it wrote."""
    text = nbformat.writes(nb)
    text += "" if text.endswith("\n") else "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks", help="folder to write to (default: notebooks/)")
    out = parser.parse_args(argv).out
    for name, title in NOTEBOOKS.items():
        write_if_changed(build(name, title), out / f"{name}.ipynb")
    write_if_changed(build_table2(), out / "table2.ipynb")
    write_if_changed(build_explore(), out / "explore.ipynb")


if __name__ == "__main__":
    main()
