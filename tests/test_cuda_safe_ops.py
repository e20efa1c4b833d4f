"""A training step calls no op that raises on CUDA under ``torch.use_deterministic_algorithms(True)``.

The GPU path cannot run here, so every call a training step makes into torch (forward, loss, backward,
optimiser step) is recorded on CPU with a TorchDispatchMode (ATen ops, backward kernels included) and a
TorchFunctionMode (the Python API calls, for a readable report), and checked against the documented list
(:data:`reprolib.training._determinism.THROWS_ON_CUDA_UNDER_DETERMINISM`). The old loss path
(``F.cross_entropy`` on (B,C,H,W)) and the old bilinear upsampling are shown to be caught.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from reprolib.backends.embedded import build_generator, build_segmentation
from reprolib.training._determinism import throws_on_cuda
from reprolib.training.embedded_backends import ResynthesisTask, SegmentationTask
from reprolib.training.module import DissimilarityModule


class Recorder(TorchDispatchMode):
    """Records every ATen op (name) and which would throw on CUDA under determinism."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()
        self.flagged: dict[str, str] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = func.overloadpacket.__name__
        self.ops.add(name)
        entry = throws_on_cuda(name, args, kwargs)
        if entry:
            self.flagged[name] = entry
        return func(*args, **(kwargs or {}))


class FunctionRecorder(TorchFunctionMode):
    """Records the Python-level torch calls (e.g. ``cross_entropy``) for the failure message."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.calls.add(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def _record(step) -> tuple[Recorder, FunctionRecorder]:  # noqa: ANN001
    ops, calls = Recorder(), FunctionRecorder()
    with calls, ops:
        step()
    return ops, calls


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    label = (torch.rand(2, 64, 128, generator=g) < 0.2).long()
    label[:, :3] = 255
    return {"original": torch.rand(2, 3, 64, 128, generator=g), "synthesis": torch.rand(2, 3, 64, 128, generator=g),
            "semantic": F.one_hot(torch.randint(0, 19, (2, 64, 128), generator=g), 19).permute(0, 3, 1, 2).float(),
            "entropy": torch.rand(2, 1, 64, 128, generator=g), "perceptual": torch.rand(2, 1, 64, 128, generator=g),
            "distance": torch.rand(2, 1, 64, 128, generator=g), "label": label}


def _dissimilarity_step(ensemble_mode: str | None):  # noqa: ANN202
    module = DissimilarityModule({"width": 0.0625, "pretrained": False}, class_weights=[1.4, 20.0],
                                 ensemble_mode=ensemble_mode)
    opt = module.configure_optimizers()
    batch = _batch()

    def step() -> None:
        loss, _ = module.loss_and_prob(batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return step


def _embedded_step(task_cls, build):  # noqa: ANN001, ANN202
    task = task_cls(build("light", seed=0), lr=1e-3, max_steps=2, seed=0)
    opt = task.configure_optimizers()["optimizer"]
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 64, 128, generator=g)
    label_ids = torch.randint(0, 34, (2, 64, 128), generator=g)
    train_ids = torch.randint(0, 19, (2, 64, 128), generator=g)
    train_ids[:, :2] = 255

    def step() -> None:
        loss = task.training_step((image, label_ids, train_ids), 0)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return step


def test_dissimilarity_training_step_is_cuda_deterministic() -> None:
    ops, calls = _record(_dissimilarity_step(None))
    assert "convolution_backward" in ops.ops and "gather" in ops.ops, "the recorder must see forward and backward"
    assert not ops.flagged, f"ops that raise on CUDA under determinism: {ops.flagged} (python calls: {sorted(calls.calls)})"
    assert "cross_entropy" not in calls.calls and "nll_loss" not in calls.calls


def test_learned_ensemble_training_step_is_cuda_deterministic() -> None:
    ops, calls = _record(_dissimilarity_step("probability"))
    assert "convolution_backward" in ops.ops
    assert not ops.flagged, f"ops that raise on CUDA under determinism: {ops.flagged}"
    assert "nll_loss" not in calls.calls


def test_embedded_segmentation_and_resynthesis_steps_are_cuda_deterministic() -> None:
    for task_cls, build in ((SegmentationTask, build_segmentation), (ResynthesisTask, build_generator)):
        ops, calls = _record(_embedded_step(task_cls, build))
        assert "convolution_backward" in ops.ops and "upsample_bilinear2d" in ops.ops  # forward unchanged
        assert not ops.flagged, f"{task_cls.__name__}: ops that raise on CUDA under determinism: {ops.flagged}"


def test_recorder_catches_the_old_paths() -> None:
    """The old loss (F.cross_entropy / F.nll_loss on 4-D) and F.interpolate's bilinear backward are caught."""
    logits = torch.randn(2, 2, 8, 16, requires_grad=True)
    target = torch.randint(0, 2, (2, 8, 16))
    ops, calls = _record(lambda: F.cross_entropy(logits, target, weight=torch.tensor([1.0, 9.0]),
                                                 ignore_index=255).backward())
    assert "nll_loss2d_forward" in ops.flagged and "cross_entropy" in calls.calls
    ops, _ = _record(lambda: F.nll_loss(F.log_softmax(logits, 1).flatten(2)[..., 0], target[:, 0, 0]).backward())
    assert "nll_loss_forward" in ops.flagged
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    ops, _ = _record(lambda: F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False).sum().backward())
    assert "upsample_bilinear2d_backward" in ops.flagged
    # conditional entries: bincount only with weights
    ops, _ = _record(lambda: torch.bincount(torch.tensor([0, 1, 1])))
    assert not ops.flagged
    ops, _ = _record(lambda: torch.bincount(torch.tensor([0, 1, 1]), weights=torch.ones(3)))
    assert "bincount" in ops.flagged
