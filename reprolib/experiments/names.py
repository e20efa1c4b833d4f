"""What a reader sees for each machine key: variants, protocol suffixes, data sets and tables.

The results CSVs name a row by its ``variant`` key (``no_generator_no_uncertainty@report_selection``); every table,
figure, claim and summary shows it through this module, in the MLRC report's own wording (its tables' row names:
"Full Framework", "w/o data generator & w/o unc. maps", "Moderate1", ...). A key's protocol suffixes are shown in
the short form the tables' protocol column and its caption legend use (:data:`PROTOCOL_SHORT`,
:data:`PROTOCOL_LEGEND`). Plain text: the report's LaTeX escapes it.
"""

from __future__ import annotations

#: row suffix of the MLRC report's grid protocol (see ``reprolib.experiments.ensembling``)
REPORT_PROTOCOL = "@report_protocol"
#: name suffix of a variant trained with the report's checkpoint selection (``Variant.selection == "report"``)
REPORT_SELECTION = "@report_selection"

#: variant key → the row name a reader sees: the MLRC report's own wording for its rows (Tables 3-8, Figures 4-6);
#: ``"<table>:<key>"`` overrides a key in one table (the dry run's "full" is scored without an ensemble)
VARIANT_NAMES: dict[str, str] = {
    "SynBoost": "SynBoost",  # Tables 3 and Figure 3: the method, as the paper names it
    # Table 4
    "full": "Full Framework",
    "no_ensemble": "w/o ensemble",
    "no_uncertainty": "w/o unc. maps",
    "no_generator_no_uncertainty": "w/o data generator & w/o unc. maps",
    # Table 5: the report's "end to end ensemble (OURS)" row is its own form of the ensemble (maps on both logits)
    "grid_search": "ensemble grid search",
    "end_to_end": "end to end ensemble",
    "end_to_end_repro": "end to end ensemble, report's form",
    # Table 6
    "original": "Original",
    "light": "Light",
    "image_resynthesis_pp": "Im. Resyn.++",
    # Table 7 (the report writes "W/O" there, "w/o" in Table 4: one spelling here)
    "no_entropy": "w/o Softmax Entropy",
    "no_distance": "w/o Softmax Distance",
    "no_perceptual": "w/o Perceptual Difference",
    # Table 8
    "moderate1": "Moderate1",
    "moderate2": "Moderate2",
    # Figures 4-6: the VGG16 row (the profile's lr: the paper's 1e-4 in full; SELU) is each figure's baseline
    "vgg16": "VGG16",
    "resnet18": "ResNet18",
    "resnet101": "ResNet101",
    "lr_x10": "lr ×10",
    "lr_x0.1": "lr ×0.1",
    "relu": "ReLU",
    # the paper-scale dry run (results/smoke-full)
    "smoke-full:full": "Full Framework, w/o ensemble",
    "smoke-full:full+fixed_ensemble": "Full Framework, fixed ensemble",
}

#: a row's protocol in the tables' ``protocol`` column and in the figures' row names
PROTOCOL_SHORT = {"corrected": "corrected", "report": "report's grid", "selection": "report's sel."}
#: the caption's key to :data:`PROTOCOL_SHORT`, short form → meaning
PROTOCOL_LEGEND = {"corrected": "grid weights minimising FPR95, tuned and reported on cross-fitted halves",
                   "report's grid": "weights maximising AP - FPR95, tuned on the reported set",
                   "report's sel.": "checkpoint selected on FS L&F (best.ckpt), as the report"}

#: evaluation set key → name
DATASET_NAMES = {"fs_lost_and_found": "FS L&F", "fs_static": "FS Static"}


def base_variant(variant: str) -> str:
    """The variant key without its protocol suffixes (``full@report_selection@report_protocol`` → ``full``)."""
    return str(variant).partition("@")[0]


def variant_name(variant: str, table: str | None = None) -> str:
    """The display name of a variant key, its protocol suffixes left out (:func:`protocol_short` shows them).

    An unknown key is shown with spaces for underscores (tests and ad-hoc variants); every key of the tables, the
    reference numbers and the committed results has an entry (``tests/test_names.py``)."""
    base = base_variant(variant)
    if table is not None and f"{table}:{base}" in VARIANT_NAMES:
        return VARIANT_NAMES[f"{table}:{base}"]
    return VARIANT_NAMES.get(base, base.replace("_", " "))


def protocol_short(variant: str, variants: set[str] | frozenset[str]) -> str:
    """The short protocol of a row (``""`` for a row with no grid ensemble and our selection): ``corrected`` for a
    grid row whose ``@report_protocol`` twin is among ``variants``, ``report's grid`` for that twin, each preceded by
    ``report's sel.;`` for a row trained with the report's checkpoint selection."""
    variant = str(variant)
    if variant.endswith(REPORT_PROTOCOL):
        grid = PROTOCOL_SHORT["report"]
    else:
        grid = PROTOCOL_SHORT["corrected"] if f"{variant}{REPORT_PROTOCOL}" in variants else ""
    if REPORT_SELECTION in variant:
        return f"{PROTOCOL_SHORT['selection']}; {grid}" if grid else PROTOCOL_SHORT["selection"]
    return grid


def row_label(variant: str, variants: set[str] | frozenset[str], table: str | None = None) -> str:
    """A row's full display name where no protocol column stands beside it (the figures' axes):
    ``Full Framework (report's sel.; report's grid)``."""
    protocol = protocol_short(variant, variants)
    name = variant_name(variant, table)
    return f"{name} ({protocol})" if protocol else name


def protocol_legend(cells: list[str]) -> str:
    """The caption's key to the short protocol cells: only the terms the table uses."""
    used = [k for k in PROTOCOL_LEGEND if any(k in c for c in cells)]
    return ("Protocol: " + "; ".join(f"{k} = {PROTOCOL_LEGEND[k]}" for k in used) + ".") if used else ""


def table_title(name: str) -> str:
    """Which of the report's tables or figures ``results/<name>/`` reproduces ("Table 4", "Figures 4-6"); the
    folder's name when none ("smoke-full")."""
    if name.startswith("table") and name[5:].isdigit():
        return f"Table {name[5:]}"
    return {"figures": "Figures 4-6", "figure3": "Figure 3"}.get(name, name)
