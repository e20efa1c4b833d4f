"""What each table and figure of the report runs: its variants, and how each differs from the full model.

A :class:`Variant` is a small diff against the full SynBoost framework; the pipeline turns it into a
training config, reusing trained models where a variant only changes evaluation (e.g. "w/o ensemble"
evaluates the full model without the ensemble, as the report did).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Ensemble modes: "grid" (weights by grid search on a held-out tuning split), "none" (raw p(anomaly)),
#: "fixed" (the shipped 0.75·p + 0.25·H), "learned-probability" / "learned-repro" (end-to-end, trained).
ENSEMBLES = ("grid", "none", "fixed", "learned-probability", "learned-repro")


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

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"variant {self.name}: ensemble {self.ensemble!r} not in {ENSEMBLES}")

    def training_key(self) -> tuple:
        """Variants with the same key share one trained model per seed."""
        learned = self.ensemble if self.ensemble.startswith("learned") else None
        return (tuple(sorted(self.model.items())), tuple(sorted(self.train.items())), self.void_labels,
                self.combo, learned)


NO_MAPS = {"uncertainty": False, "spade_decoder": False}  # the original's baseline (DissimNet, plain decoder)


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    variants: tuple[Variant, ...]
    seeds_demo: tuple[int, ...] = (0,)
    seeds_full: tuple[int, ...] = (0,)
    default_combo: str = "original"  # with real data; the embedded world maps it to its embedded twin


TABLES: dict[str, TableSpec] = {
    "table3": TableSpec("table3", "Main results", (Variant("SynBoost"),), (0,), (0,)),
    "table4": TableSpec(
        "table4", "Ablations",
        (
            Variant("full"),
            Variant("no_ensemble", ensemble="none", reuse="full"),
            Variant("no_uncertainty", model=NO_MAPS, ensemble="none"),
            Variant("no_generator_no_uncertainty", model=NO_MAPS, ensemble="none", void_labels=False),
        ),
        seeds_demo=(0, 1, 2), seeds_full=(0, 1, 2, 3, 4),
    ),
    "table5": TableSpec(
        "table5", "End-to-end vs grid-search ensemble",
        (
            Variant("grid_search"),
            Variant("end_to_end", ensemble="learned-probability"),
            Variant("end_to_end_repro", ensemble="learned-repro"),
        ),
    ),
    "table6": TableSpec(
        "table6", "Generalisability", (Variant("original", combo="original"), Variant("light", combo="light")),
    ),
    "table7": TableSpec(
        "table7", "Uncertainty-map ablation",
        (
            Variant("full"),
            Variant("no_entropy", model={"uncertainty_maps": ("perceptual", "distance")}),
            Variant("no_distance", model={"uncertainty_maps": ("entropy", "perceptual")}),
            Variant("no_perceptual", model={"uncertainty_maps": ("entropy", "distance")}),
        ),
    ),
    "table8": TableSpec(
        "table8", "Segmentation / resynthesis strength",
        (Variant("moderate1", combo="moderate1"), Variant("moderate2", combo="moderate2")),
    ),
    "figures": TableSpec(
        "figures", "Encoder, learning rate and activation",
        (
            Variant("vgg16"),
            Variant("resnet18", model={"encoder": "resnet18"}),
            Variant("resnet101", model={"encoder": "resnet101"}),
            Variant("lr_1e-3", train={"lr": 1e-3}),
            Variant("lr_1e-5", train={"lr": 1e-5}),
            Variant("relu", model={"activation": "relu"}),
        ),
    ),
    "figure3": TableSpec("figure3", "Qualitative predictions", (Variant("SynBoost"),)),
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
