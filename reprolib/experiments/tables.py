"""What each table and figure of the report runs: its variants, and how each differs from the full model.

A :class:`Variant` is a small diff against the full SynBoost framework; the pipeline turns it into a
training config, reusing trained models where a variant only changes evaluation (e.g. "w/o ensemble"
evaluates the full model without the ensemble, as the report did).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from reprolib.data.formats import UNCERTAINTY_MAPS
from reprolib.experiments.names import (  # noqa: F401 (REPORT_*: re-exported)
    PROTOCOL_SHORT,
    REPORT_PROTOCOL,
    REPORT_SELECTION,
    VARIANT_NAMES,
)

#: Ensemble modes: "grid" (weights by grid search on a held-out tuning split), "none" (raw p(anomaly)),
#: "fixed" (the shipped 0.75·p + 0.25·H), "learned-probability" / "learned-repro" (end-to-end, trained).
ENSEMBLES = ("grid", "none", "fixed", "learned-probability", "learned-repro")
#: Checkpoint selection: "corrected" (ours: best.ckpt and the plateau scheduler on the generated Cityscapes-val
#: split) or "report" (the original's and the MLRC report's trainer, spec §4.2: best.ckpt on FS L&F's loss, the
#: scheduler on FS Static's, both evaluation sets)
SELECTIONS = ("corrected", "report")


@dataclass(frozen=True)
class Variant:
    """One row of a table: how it differs from the full framework."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)  # DissimilarityConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # optimiser / schedule overrides (e.g. lr)
    ensemble: str = "grid"
    void_labels: bool = True  # training data with the void-as-anomaly extension of the data generator
    combo: str | None = None  # backend combo; None → the table's default (embedded, or original with real data)
    reuse: str | None = None  # evaluate the trained model of another variant instead of training one
    selection: str = "corrected"  # see SELECTIONS

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"variant {self.name}: ensemble {self.ensemble!r} not in {ENSEMBLES}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"variant {self.name}: selection {self.selection!r} not in {SELECTIONS}")

    def ensemble_maps(self) -> tuple[str, ...]:
        """The uncertainty maps the grid ensemble may weight: those the network itself sees.

        Table 7 removes a map from the network; the same map is then removed from the ensemble too (its
        weight fixed at 0), or "w/o H" would still get H through the ensemble.
        """
        if self.model.get("uncertainty") is False:  # a network without the maps: none in its ensemble either
            return ()
        used = self.model.get("uncertainty_maps")
        return tuple(UNCERTAINTY_MAPS) if used is None else tuple(m for m in UNCERTAINTY_MAPS if m in used)

    def training_key(self) -> tuple:
        """Variants with the same key share one trained model per seed."""
        learned = self.ensemble if self.ensemble.startswith("learned") else None
        key = (tuple(sorted(self.model.items())), tuple(sorted(self.train.items())), self.void_labels,
               self.combo, learned)
        # only when not the default: the rows' config_hash (which covers this key) of every other variant stays
        return key if self.selection == "corrected" else (*key, ("selection", self.selection))


#: "w/o uncertainty maps" as the MLRC trainer builds it: ``prior: False`` selects ``DissimNet`` and passes the
#: config's ``spade: decoder`` on unchanged, so the SPADE decoder stays (the published *baseline* checkpoint,
#: ``best_net_baseline``, has a plain decoder instead; the report's numbers come from the MLRC trainer).
NO_MAPS = {"uncertainty": False}

_SEL, _GRID, _CORR = PROTOCOL_SHORT["selection"], PROTOCOL_SHORT["report"], PROTOCOL_SHORT["corrected"]
#: the two grid-search protocols every grid row is reported with (see ``reprolib.experiments.ensembling``)
GRID_NOTE = (
    f"Grid-ensemble variants appear twice: the {_GRID} row is the MLRC report's protocol (weights "
    "maximising AP - FPR95, tuned on the very set reported) and sits beside the report's number; the "
    f"{_CORR} row is our protocol (weights minimising FPR95, as the original code, tuned on one half of the images "
    "and reported on the other, cross-fitted; each recording sequence lies in one half; the row is the mean of "
    f"the two halves' metrics). A row without a grid ensemble ({VARIANT_NAMES['no_ensemble']}, a learned ensemble) "
    f"has one set of metrics over all images, so its difference to a {_CORR} row also holds that of the two estimates."
)
#: how every table and figure selects its checkpoint, and how the report's trainer did
CHECKPOINT_NOTE = ("Checkpoint: lowest validation loss (best.ckpt) on the generated Cityscapes-val split, which also "
                   "drives the plateau scheduler (the demo profile keeps its step budget and selects the best of its "
                   "validations). The report's trainer, like the original, kept the checkpoint with the lowest FS L&F "
                   "loss and stepped the scheduler on FS Static's loss, i.e. it selected on the evaluation sets")
EPOCHS_NOTE = CHECKPOINT_NOTE + f"; this table's {_SEL} rows reproduce that selection, beside ours."
#: Figure 3's: a qualitative figure of one model (beside the published one), with no report-selection row
FIGURE3_SELECTION_NOTE = (CHECKPOINT_NOTE + f"; the other tables' {_SEL} rows reproduce that "
                          "selection, beside ours. Figure 3, a qualitative figure of one model, has no such row.")
#: every table's sentence on its report-selection rows (the report's selection, beside our corrected one)
SELECTION_NOTE = (f"A {_SEL} row is its variant trained again with the report's checkpoint selection: "
                  "best.ckpt is the lowest cross-entropy on FS L&F (labels/, as the original's validation "
                  "loader) and the plateau scheduler steps on FS Static's loss (labels/, the full labels of its "
                  "last test loader), each the mean of the images' own losses (its loaders took one image a batch), "
                  "so it selects on the very sets it is scored on; "
                  f"the {_SEL}; {_GRID} row (grid-ensemble variants) follows both of the report's "
                  "procedures and sits beside the report's number. It starts from its twin's trajectory, which is the "
                  "same until the plateau scheduler can first act (REPORT_SELECTION=no, or the notebook parameter "
                  "report_selection=False, leaves these "
                  "rows out).")
#: the caption's sentences on checkpoint selection, in every table with report-selection rows (all but Figure 3)
SELECTION_NOTES = EPOCHS_NOTE + " " + SELECTION_NOTE

#: Table 8's two combos, as the report lists them (§4.2.2, items 1-2); its next paragraph describes them the other
#: way round, so a reader matching our rows with its numbers must know which definition we follow
MODERATE_NOTE = ("Moderate1 = SDCNet-paper segmentation (DeepWV3Plus) + SPADE resynthesis; Moderate2 = ICNet "
                 "segmentation + CC-FPSE resynthesis, as the report's list defines them. The report's discussion "
                 "sentence describes them the other way round ('Moderate1 (lighter segmentation, same resynthesis "
                 "network) and Moderate2 (same segmentation, lighter resynthesis network)'); we follow the list.")


def beside_report_selection(*variants: Variant) -> tuple[Variant, ...]:
    """Each variant followed by its twin trained with the report's checkpoint selection (``<name>@report_selection``;
    a variant that reuses another's model reuses that one's twin): our corrected row beside the report's, never
    instead of it."""
    out: list[Variant] = []
    for v in variants:
        twin = replace(v, name=v.name + REPORT_SELECTION, selection="report",
                       reuse=v.reuse + REPORT_SELECTION if v.reuse else None)
        out += [v, twin]
    return tuple(out)


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    variants: tuple[Variant, ...]
    seeds_demo: tuple[int, ...] = (0,)
    seeds_full: tuple[int, ...] = (0,)
    default_combo: str = "original"  # with real data; the embedded world maps it to its embedded twin
    #: training epochs in profiles that train by epochs (``full``): the report trained Tables 3/4 for 50 and
    #: "the additional experiments" (Tables 5-8, Figures 4-6) for 25 (its Table 1 caption)
    epochs: int = 25
    #: the table's own evaluation resolution (None → ``"processed"``, the original's); an explicit
    #: ``eval_resolution`` given to ``run_table`` wins
    eval_resolution: str | None = None
    caption: str = ""  # plain text: what a reader must know to compare our rows with the report's (notebook, LaTeX)

    def source(self, variant: Variant) -> Variant:
        """The variant whose model ``variant`` evaluates: the one it reuses, else itself."""
        return next(v for v in self.variants if v.name == variant.reuse) if variant.reuse else variant

    def report_twins(self, source: Variant, among: tuple[Variant, ...] | list[Variant] | None = None) -> list[Variant]:
        """The report-selection variants (of ``among``, default the table's) whose corrected twin trains ``source``'s
        model: they start from its trajectory (:mod:`reprolib.training.selection`)."""
        key = source.training_key()
        return [v for v in (self.variants if among is None else among)  # one that reuses a model starts nothing
                if v.selection == "report" and not v.reuse and replace(v, selection="corrected").training_key() == key]


TABLES: dict[str, TableSpec] = {
    "table3": TableSpec(
        "table3", "Main results",
        beside_report_selection(Variant("SynBoost", ensemble="fixed")), (0,), (0,), epochs=50,
        eval_resolution="benchmark",
        caption=("Validation-set stand-in for the hidden Fishyscapes test server, which we cannot reach: the full "
                 "framework (50 epochs in the full profile) with the shipped fixed ensemble [0.75, 0.25, 0, 0] "
                 "over (p, H, V, D), "
                 "scored at the benchmark resolution (1024x2048 for Fishyscapes; scores upsampled as the "
                 "original's submission did, PIL bicubic) on the public FS L&F and FS Static validation sets. "
                 "The paper's and the report's numbers are from the test server: other images. " + SELECTION_NOTES),
    ),
    "table4": TableSpec(
        "table4", "Ablations",
        beside_report_selection(
            Variant("full"),
            Variant("no_ensemble", ensemble="none", reuse="full"),
            Variant("no_uncertainty", model=NO_MAPS, ensemble="none"),
            Variant("no_generator_no_uncertainty", model=NO_MAPS, ensemble="none", void_labels=False),
        ),
        seeds_demo=(0, 1, 2), seeds_full=(0, 1, 2, 3, 4), epochs=50,
        caption=(GRID_NOTE + f" '{VARIANT_NAMES['no_uncertainty']}' keeps the SPADE decoder, as the MLRC trainer does "
                 "(prior: False with spade: decoder); the authors' published baseline has a "
                 f"plain decoder. '{VARIANT_NAMES['no_generator_no_uncertainty']}' trains on the same processed data "
                 "(semantic map, "
                 "resynthesis, maps) with the relabelling-only labels (labels/) instead of the "
                 "void-as-anomaly ones, as the original switched the label folder. 50 epochs in the full "
                 "profile. " + SELECTION_NOTES),
    ),
    "table5": TableSpec(
        "table5", "End-to-end vs grid-search ensemble",
        beside_report_selection(
            Variant("grid_search"),
            Variant("end_to_end", ensemble="learned-probability"),
            Variant("end_to_end_repro", ensemble="learned-repro"),
        ),
        caption=GRID_NOTE + " 25 epochs in the full profile, as the report's additional experiments. " + SELECTION_NOTES,
    ),
    "table6": TableSpec(
        "table6", "Generalisability",
        beside_report_selection(Variant("original", combo="original"), Variant("light", combo="light")),
        caption=GRID_NOTE + " 25 epochs in the full profile, as the report's additional experiments. " + SELECTION_NOTES,
    ),
    "table7": TableSpec(
        "table7", "Uncertainty-map ablation",
        beside_report_selection(
            Variant("full"),
            Variant("no_entropy", model={"uncertainty_maps": ("perceptual", "distance")}),
            Variant("no_distance", model={"uncertainty_maps": ("entropy", "perceptual")}),
            Variant("no_perceptual", model={"uncertainty_maps": ("entropy", "distance")}),
        ),
        caption=("The map removed from the network is removed from the grid ensemble too (its weight is fixed "
                 f"at 0), so '{VARIANT_NAMES['no_entropy']}' sees no H anywhere. " + GRID_NOTE
                 + " 25 epochs in the full profile. " + SELECTION_NOTES),
    ),
    "table8": TableSpec(
        "table8", "Segmentation / resynthesis strength",
        beside_report_selection(Variant("moderate1", combo="moderate1"), Variant("moderate2", combo="moderate2")),
        caption=(MODERATE_NOTE + " " + GRID_NOTE + " 25 epochs in the full profile, as the report's additional "
                 "experiments. " + SELECTION_NOTES),
    ),
    "figures": TableSpec(
        "figures", "Encoder, learning rate and activation",
        beside_report_selection(
            Variant("vgg16"),
            Variant("resnet18", model={"encoder": "resnet18"}),
            Variant("resnet101", model={"encoder": "resnet101"}),
            # relative to the profile's learning rate (PipelineProfile.training_config): 1e-3 and 1e-5 in full
            Variant("lr_x10", train={"lr_scale": 10}),
            Variant("lr_x0.1", train={"lr_scale": 0.1}),
            Variant("relu", model={"activation": "relu"}),
        ),
        caption=(f"Every row but {VARIANT_NAMES['vgg16']} changes one setting of the {VARIANT_NAMES['vgg16']} row "
                 "(VGG16 encoder, the profile's learning rate, SELU, as the "
                 "paper), which is the baseline of the encoder (Figure 4), learning-rate (Figure 5) and activation "
                 "(Figure 6) comparisons. Learning rates: the report (Figure 5) does not state the values it tried; "
                 "ours are one decade either side of the profile's: 1e-3 and 1e-5 about the paper's 1e-4 in full, "
                 "1e-2 and 1e-4 about the demo's 1e-3. " + GRID_NOTE
                 + " 25 epochs in the full profile, as the report's additional experiments. " + SELECTION_NOTES),
    ),
    "figure3": TableSpec(
        "figure3", "Qualitative predictions", (Variant("SynBoost"),), epochs=50,
        caption=("Our p(anomaly) beside the authors' published model's when its checkpoint is given "
                 "(checkpoints={'dissimilarity': PATH} or $REPROLIB_CKPT_DISSIMILARITY), "
                 "scored on the same processed images. " + FIGURE3_SELECTION_NOTE),
    ),
}

#: the embedded twin of each real combo (Tables 6/8 compare strong vs light backends on the embedded world)
EMBEDDED_COMBOS = {
    "original": "embedded",
    "light": "embedded-light",
    "moderate1": "embedded-moderate1",
    "moderate2": "embedded-moderate2",
}


def get_table(name: str) -> TableSpec:
    """The spec of a table, with a clear error for unknown names."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; choose one of {sorted(TABLES)}")
    return TABLES[name]
