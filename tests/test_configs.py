"""The shipped YAML configs load into TrainConfig and agree with the pipeline profiles they document."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from reprolib.experiments.profiles import get_pipeline_profile
from reprolib.experiments.tables import get_table
from reprolib.io import ReprolibDataError
from reprolib.training.config import ConfigError, TrainConfig, load_config, read_yaml_settings

CONFIGS = Path(__file__).resolve().parents[1] / "reprolib" / "configs"
#: YAML → (profile, table, variant) whose training it documents
DOCUMENTS = {
    "full.yaml": ("full", "table4", "full"),
    "table4_no_uncertainty.yaml": ("full", "table4", "no_uncertainty"),
    "table4_no_generator_no_uncertainty.yaml": ("full", "table4", "no_generator_no_uncertainty"),
    "table5_end_to_end.yaml": ("full", "table5", "end_to_end"),
    "demo.yaml": ("demo", "table4", "full"),
}
#: the report's epochs in the full profile (Tables 3/4: 50; the additional experiments: 25), used when the
#: tables do not carry their own count yet (TableSpec.epochs)
REPORT_EPOCHS = {"table3": 50, "table4": 50}


def _profile_config(profile: str, table: str, variant: str) -> TrainConfig:
    """What run_table trains for (profile, table, variant), splits and seed aside."""
    prof, spec = get_pipeline_profile(profile), get_table(table)
    v = next(x for x in spec.variants if x.name == variant)
    kw = dict(model=v.model, train=v.train, ensemble=v.ensemble, seed=0, train_split="train", val_split="val",
              label_dir="labels_with_void_no_ego" if v.void_labels else "labels", wandb_mode="offline",
              max_time=None, max_epochs=None, device="cpu")
    epochs = getattr(spec, "epochs", None)
    if "epochs" in inspect.signature(prof.training_config).parameters:
        kw["epochs"] = epochs
    cfg = prof.training_config(**kw)
    if epochs is None and "max_steps" not in prof.training:
        cfg["max_epochs"] = REPORT_EPOCHS.get(table, 25)
    return TrainConfig.from_dict(cfg)


def _comparable(cfg: TrainConfig) -> dict:
    """Determining settings, minus what the YAML leaves to the caller (splits, seed, profile label) and the
    evaluation-time ensembles (grid / fixed train as none); the network settings with defaults filled in."""
    from reprolib.models import DissimilarityConfig

    ident = cfg.identity()
    for key in ("train_split", "val_split", "seed", "profile"):
        ident.pop(key)
    ident["ensemble"] = cfg.ensemble_mode
    model = DissimilarityConfig(**{k: v for k, v in cfg.model.items() if k != "seed"}).to_dict()
    model.pop("seed")
    ident["model"] = model
    return ident


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_yaml_agrees_with_profile(name: str) -> None:
    ours = load_config(CONFIGS / name, train_split="train", val_split="val")
    want = _profile_config(*DOCUMENTS[name])
    a, b = _comparable(ours), _comparable(want)
    assert a == b, {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def test_every_shipped_yaml_is_documented() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(DOCUMENTS)


def test_full_yaml_is_the_papers_table1() -> None:
    cfg = load_config(CONFIGS / "full.yaml", train_split="t")
    assert (cfg.lr, cfg.betas, cfg.weight_decay, cfg.batch_size, cfg.size) == (1e-4, (0.5, 0.999), 0.0, 4, (256, 512))
    assert (cfg.max_epochs, cfg.patience, cfg.factor, cfg.class_weights, cfg.precision) == (50, 10, 0.5, "enet", "32-true")


@pytest.mark.parametrize("text, problem", [
    ("- lr: 1\n", "must be a mapping of settings"),
    ("just a string\n", "must be a mapping of settings"),
    ("lr: [1\n", "not valid YAML"),
])
def test_bad_yaml_files(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ReprolibDataError, match=problem):
        read_yaml_settings(path)


def test_missing_train_split_and_bad_values_are_one_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="train_split: required setting missing"):
        load_config(CONFIGS / "demo.yaml")
    cases = {"learning_rate": (5, "did you mean lr"), "max_step": (9, "did you mean max_steps"),
             "size": (64, "size: must be"), "model": (3, "model: must be a mapping"),
             "precision": ("fp8", "precision: must be one of"), "batch_size": (0, "batch_size: must be an integer >= 1")}
    for key, (value, message) in cases.items():
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_dict({"train_split": "t", key: value})
    with pytest.raises(ConfigError, match=r"model\.widht: unknown key \(did you mean width\?\)"):
        TrainConfig.from_dict({"train_split": "t", "model": {"widht": 1}})


def test_identity_ignores_runtime_keys_and_split_location() -> None:
    a = TrainConfig.from_dict({"train_split": "/data/processed/train-abc123", "device": "cpu", "max_time": 60})
    b = TrainConfig.from_dict({"train_split": "/kaggle/input/x/train-abc123", "device": "cuda", "wandb_mode": "online",
                               "checkpoint_every": 7, "num_workers": 2})
    assert a.identity() == b.identity() and a.differing_keys(b) == []
    c = b.replace(lr=5e-4, model={"width": 0.5})
    assert c.differing_keys(a) == ["lr", "model.width"]
    assert c.replace(train_split="/x/train-other").differing_keys(c) == ["train_split"]


def test_backend_steps_per_strength() -> None:
    demo = get_pipeline_profile("demo")
    assert demo.backend_training_for("strong")["max_steps"] == (300, 70)
    assert demo.backend_training_for("light")["max_steps"] == (300, 300)
    assert demo.backend_training_for("light")["image_size"] == (128, 256)
    assert isinstance(demo.backend_training["max_steps"], dict)  # the profile itself is not changed
    tiny = get_pipeline_profile("tiny")
    assert tiny.backend_training_for("strong")["max_steps"] == (10, 10)


def test_captions_say_how_checkpoints_were_selected_and_which_combos_table8_runs() -> None:
    """What a reader comparing our rows with the report's must know, in every caption that names it: the scored
    checkpoint is selected on the generated Cityscapes-val split, not on FS L&F as the report's trainer did
    (spec §4.2; every table's <variant>@report_selection rows do, and each says so), and Table 8 follows the
    report's list of combos, which its discussion contradicts."""
    from reprolib.backends.registry import COMBOS
    from reprolib.experiments.tables import TABLES

    with_checkpoint = [spec for spec in TABLES.values() if "best.ckpt" in spec.caption]
    assert {spec.name for spec in with_checkpoint} == set(TABLES)
    for spec in with_checkpoint:
        assert "generated Cityscapes-val split" in spec.caption, spec.name
        assert "lowest FS L&F loss" in spec.caption and "report's sel. rows reproduce that selection" in spec.caption
    # the rows that do select as the report did are explained where they sit: every table with such rows, no other
    with_rows = {spec.name for spec in TABLES.values() if any(v.selection == "report" for v in spec.variants)}
    explained = {spec.name for spec in TABLES.values()
                 if "A report's sel. row is its variant trained again with the report's checkpoint selection"
                 in spec.caption}
    assert with_rows == explained == set(TABLES) - {"figure3"}
    caption = TABLES["table8"].caption
    assert COMBOS["moderate1"] == ("deepwv3plus", "spade") and COMBOS["moderate2"] == ("icnet", "ccfpse")
    assert "Moderate1 = SDCNet-paper segmentation (DeepWV3Plus) + SPADE resynthesis" in caption
    assert "Moderate2 = ICNet segmentation + CC-FPSE resynthesis" in caption
    assert "the other way round" in caption
