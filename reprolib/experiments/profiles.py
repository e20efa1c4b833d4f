"""Pipeline profiles: how big each stage is. ``full`` = the paper; ``demo`` = the embedded default on 2 CPU cores.

The demo profile runs the *same code* at a smaller scale (images, network width, steps) and every result
it produces carries ``profile = "demo"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PipelineProfile:
    name: str
    size: tuple[int, int]  # dissimilarity training / evaluation resolution (H, W)
    world: dict[str, Any]  # generate_world kwargs (embedded world only)
    backend_training: dict[str, Any]  # train_embedded_backends kwargs (embedded backends only)
    training: dict[str, Any]  # dissimilarity training defaults
    precompute_batch: int = 4
    eval_batch: int = 4
    seeds: tuple[int, ...] | None = None  # None → the table's own seeds for this profile
    grid_objective: str = "fpr95"  # the original's selection rule (spec §3.2)
    model: dict[str, Any] = field(default_factory=dict)  # DissimilarityConfig defaults for this profile
    #: ImageNet weights (VGG16 encoder, VGG19 for V): "required" refuses to start without them (the paper's
    #: setting must not silently train on random weights); "optional" uses them when found, random otherwise
    #: (every result row says which, see reprolib.experiments.results.imagenet_weights_used)
    imagenet: str = "optional"
    perceptual_pretrained: bool = True  # V's VGG19 from ImageNet when found (PerceptualDifference's default)

    def check_imagenet_weights(self, encoders: Iterable[str] = ("vgg16",)) -> dict[str, Any]:
        """Raise :class:`reprolib.io.ReprolibDataError` naming the missing file when the profile requires the
        ImageNet weights and they are not there; returns the files found (empty when not required).

        ``encoders``: the dissimilarity encoders the runs load ImageNet weights for (:meth:`pretrained_encoders`
        of a table's variants: Figure 4's ResNet18 / ResNet101 too, which the report's trainer also started from
        ImageNet); V's VGG19 always.
        """
        if self.imagenet != "required":
            return {}
        # lazy: reprolib.models imports torchvision, +2.3 s on `import reprolib.experiments` (python -X importtime);
        # only the `full` profile requires the files
        from reprolib.models.pretrained import require_imagenet_weights

        return require_imagenet_weights(tuple(dict.fromkeys((*encoders, "vgg19"))), profile=self.name)

    def pretrained_encoders(self, models: Iterable[dict[str, Any]]) -> tuple[str, ...]:
        """The encoders (in order, once each) whose ImageNet weights networks with these ``model`` overrides
        load in this profile: those with ``pretrained`` (the network's default) at width 1.0."""
        out = []
        for overrides in models:
            model = {**self.model, **overrides}
            # True only: a path names its own file, checked where it is loaded (as `python -m reprolib train`)
            if model.get("pretrained", True) is True and float(model.get("width", 1.0)) == 1.0:
                out.append(str(model.get("encoder", "vgg16")))
        return tuple(dict.fromkeys(out))

    def backend_training_for(self, strength: str) -> dict[str, Any]:
        """``backend_training`` for one strength: a ``max_steps`` dict keyed by strength picks its entry."""
        kwargs = dict(self.backend_training)
        steps = kwargs.get("max_steps")
        if isinstance(steps, dict):
            kwargs["max_steps"] = steps[strength]
        return kwargs

    def training_overrides(self) -> dict[str, Any]:
        return {**self.training, "model": self.model, "size": list(self.size)}

    def training_config(
        self, *, model: dict[str, Any], train: dict[str, Any], ensemble: str, seed: int, train_split: str,
        val_split: str, label_dir: str, wandb_mode: str, max_time: str | None, max_epochs: int | None, device: str,
        epochs: int | None = None,
    ) -> dict[str, Any]:
        """The flat training config handed to :func:`reprolib.training.run.train`.

        ``epochs`` is the table's epoch count (the report: 50 for Tables 3/4, 25 for the additional
        experiments). It applies only to a profile that trains by epochs (``full``); a profile with a step
        budget (``demo``, ``tiny``) keeps its steps, so every table costs the same there. ``max_epochs`` (the
        user's override) wins over both. ``train`` may scale the profile's learning rate (``lr_scale``: Figure 5's
        rows, a decade either side of whatever the profile trains with).
        """
        train = dict(train)
        if "lr_scale" in train:
            # to 3 significant digits: 1e-4 × 0.1 is 1.0000000000000001e-05 in floats, the run named by 1e-05
            train["lr"] = float(f"{self.training['lr'] * float(train.pop('lr_scale')):.3g}")
        cfg = {
            **self.training,
            **train,
            "model": {**self.model, **model, "seed": seed},
            "ensemble": ensemble,
            "seed": seed,
            "size": list(self.size),
            "train_split": train_split,
            "val_split": val_split,
            "label_dir": label_dir,
            "wandb_mode": wandb_mode,
            "device": device,
            "profile": self.name,
        }
        if epochs and "max_steps" not in self.training:
            cfg["max_epochs"] = int(epochs)
        if max_time:
            cfg["max_time"] = max_time
        if max_epochs:
            cfg["max_epochs"] = max_epochs
            cfg.pop("max_steps", None)
        return cfg


PROFILES: dict[str, PipelineProfile] = {
    # The paper: 256×512, width 1 (VGG16 ImageNet weights when in the torch cache), batch 4, 50 epochs
    # (25 for the report's additional experiments: TableSpec.epochs), Adam 1e-4 (0.5, 0.999),
    # ReduceLROnPlateau(10, 0.5) on the validation loss; the best checkpoint by validation loss is scored.
    "full": PipelineProfile(
        name="full",
        size=(256, 512),
        world={"size": (256, 512), "n_train": 200, "n_val": 40, "n_laf": 40, "n_static": 30},
        backend_training={"image_size": (256, 512)},
        training={"lr": 1e-4, "batch_size": 4, "max_epochs": 50},
        model={"width": 1.0, "pretrained": True},
        imagenet="required",
    ),
    # The paper-scale dry run (``make smoke-full``, reprolib.experiments.smoke): the embedded world written at
    # Cityscapes' 1024×2048, the real Original backends (random unless checkpoints are given), the width-1.0
    # VGG16 network for a few steps at 256×512, batch 4; ImageNet weights when found, else random (labelled).
    "smoke": PipelineProfile(
        name="smoke",
        size=(256, 512),
        world={"size": (1024, 2048), "n_train": 4, "n_val": 1, "n_laf": 1, "n_static": 1},
        backend_training={},
        training={"lr": 1e-4, "batch_size": 4, "max_steps": 2, "val_every_n_steps": 2,
                  "checkpoint_every": 1},
        model={"width": 1.0, "pretrained": True},
        precompute_batch=1,
        eval_batch=1,
        seeds=(0,),
    ),
    # Embedded default: a whole Table 4 (3 trainings × 3 seeds, and their report-selection twins selected from their
    # snapshots) in about 9-13 minutes on 2 CPU cores by machine, set-up included (a fresh clone of 8e7b06b: 11m49.0s on
    # an AMD EPYC; benchmarks/README.md).
    "demo": PipelineProfile(
        name="demo",
        size=(128, 256),
        world={"size": (128, 256), "n_train": 160, "n_val": 24, "n_laf": 30, "n_static": 24},
        # (segmentation, resynthesis) steps. The strong generator's loss is flat after ~75 of 300 steps: 70 steps give
        # a val PSNR of 17.91 dB (100: 18.06, 300: 18.05) and, in Table 4 (full model, 3 seeds), numbers within the
        # seeds' spread of 100's (4 of 8 better, benchmarks/README.md) for 30 s less; the light one still gains
        # (17.15 dB at 100, 17.75 at 300), so it keeps 300. Segmentation still improves at 300 (train loss 0.21 → 0.18).
        backend_training={"image_size": (128, 256), "max_steps": {"strong": (300, 70), "light": (300, 300)}},
        # Adam at 1e-3 for 120 steps, not the paper's 1e-4: the demo's network is an eighth as wide, and on the embedded
        # world (Table 4's full model, 3 seeds) 1e-3 × 120 steps beat 1e-4 × 240 on every metric of the network alone
        # (AP FS L&F 10.9 vs 9.1 %, FS Static 11.1 vs 6.2 %; FPR95 52.3 vs 60.0 %, 30.1 vs 44.2 %) in half the time
        training={"lr": 1e-3, "batch_size": 4, "max_steps": 120, "val_every_n_steps": 40},
        model={"width": 0.125, "pretrained": False},
    ),
    # The test suite's smallest run: seconds per stage.
    "tiny": PipelineProfile(
        name="tiny",
        size=(64, 128),
        world={"size": (64, 128), "n_train": 8, "n_val": 4, "n_laf": 4, "n_static": 4},
        backend_training={"image_size": (64, 128), "max_steps": (10, 10)},
        training={"lr": 1e-4, "batch_size": 2, "max_steps": 4, "val_every_n_steps": 2},
        model={"width": 0.0625, "pretrained": False},
        seeds=(0,),
    ),
}


def get_pipeline_profile(name: str) -> PipelineProfile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]
