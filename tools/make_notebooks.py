"""(Re)write the thin table notebooks under notebooks/ — parameters cell, calls into reprolib, a table, a figure.

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
checkpoints = None      # real backend checkpoints for the original/light combos: dict name → path
seeds = None            # None → the profile's seeds
max_epochs = None       # None → the profile's
max_time = None         # e.g. "00:11:00:00": the whole session's budget (every stage stops cleanly before it)
device = "auto"         # "auto" | "cpu" | "cuda"
work_dir = "data"       # world, backends, processed splits, runs (reused across tables and reruns)
output_dir = "results/{name}"
wandb_mode = "offline"  # "online" only if you set WANDB_API_KEY yourself
precision = "32-true"    # fp32 as the original; "bf16-mixed" / "16-mixed" only on request (GPU)
eval_resolution = None  # None → the table's protocol ("benchmark" for Table 3, else "processed" as the original)
kaggle = False          # set by the Kaggle bundle
'''


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
            "    precision=precision,\n)"
        ),
        nbformat.v4.new_markdown_cell("## Ours beside the MLRC report and the paper (AP, FPR95 in %)"
                                      + (f"\n\n{TABLES[name].caption}" if TABLES[name].caption else "")),
        nbformat.v4.new_code_cell(f"comparison_table(results, {name!r})"),
        nbformat.v4.new_code_cell(f"table_figure(results, {name!r}, output_dir)"),
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
            " work_dir=work_dir,\n    output_dir=output_dir, device=device, n_images=n_images, repeat=repeat,\n)\n"
            "print('ours:', hardware())\nprint('report:', REPORT_HARDWARE)\ntable2"),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"table2-{i}"
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


if __name__ == "__main__":
    main()
