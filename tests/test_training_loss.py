"""The CUDA-deterministic loss equals PyTorch's, and the network stays finite under mixed precision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprolib.ensemble.learned import LearnedEnsemble
from reprolib.models import DissimilarityConfig, DissimilarityNet
from reprolib.models import blocks as B
from reprolib.training.loss import weighted_cross_entropy, weighted_nll, weighted_nll_sums
from reprolib.training.module import DissimilarityModule


def _case(seed: int, classes: int = 2, shape: tuple[int, ...] = (3, 16, 24), ignore: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], classes, *shape[1:], generator=g) * 4
    target = torch.randint(0, classes, shape, generator=g)
    target[torch.rand(shape, generator=g) < ignore] = 255
    return logits, target


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weight", [None, [1.4, 27.3], [0.2, 3.0]])
def test_weighted_cross_entropy_equals_torch(seed: int, weight: list[float] | None) -> None:
    logits, target = _case(seed)
    w = None if weight is None else torch.tensor(weight)
    ours = weighted_cross_entropy(logits, target, w)
    ref = F.cross_entropy(logits, target, weight=w, ignore_index=255)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-6), (ours, ref)
    # gradients agree too (what training follows)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    weighted_cross_entropy(a, target, w).backward()
    F.cross_entropy(b, target, weight=w, ignore_index=255).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_many_classes_and_all_ignored() -> None:
    logits, target = _case(7, classes=19, shape=(2, 8, 8))
    w = torch.rand(19, generator=torch.Generator().manual_seed(0)) + 0.1
    assert torch.allclose(weighted_cross_entropy(logits, target, w),
                          F.cross_entropy(logits, target, weight=w, ignore_index=255), atol=1e-6)
    target[:] = 255  # nothing to learn from: PyTorch's 0/0 = nan, kept
    assert torch.isnan(weighted_cross_entropy(logits, target)) and torch.isnan(F.cross_entropy(logits, target, ignore_index=255))


@pytest.mark.parametrize("mode", ["probability", "anomaly_logit", "repro"])
def test_weighted_nll_equals_torch_on_learned_ensemble_output(mode: str) -> None:
    logits, target = _case(3)
    g = torch.Generator().manual_seed(1)
    maps = [torch.rand(3, 1, 16, 24, generator=g) for _ in range(3)]
    logp = LearnedEnsemble(mode)(logits, *maps)
    w = torch.tensor([1.3, 9.0])
    assert torch.allclose(weighted_nll(logp, target, w), F.nll_loss(logp, target, weight=w, ignore_index=255),
                          rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weight", [None, [1.4, 27.3]])
def test_weighted_nll_sums_per_image(weight: list[float] | None) -> None:
    """Per-image numerator / denominator: any group of images gives that group's loss (DDP regroups them)."""
    logits, target = _case(5, shape=(4, 16, 24))
    target[2] = 255  # an image with no counted pixel adds 0 / 0
    w = None if weight is None else torch.tensor(weight)
    logp = F.log_softmax(logits, dim=1)
    num, den = weighted_nll_sums(logp, target, w)
    assert num.shape == den.shape == (4,) and den[2] == 0 and num[2] == 0
    for group in ([0, 1, 2, 3], [1, 2], [3]):
        ref = F.nll_loss(logp[group], target[group], weight=w, ignore_index=255)
        assert torch.allclose(num[group].sum() / den[group].sum(), ref, rtol=1e-6), group


# ------------------------------------------------------------------------------ mixed precision on CPU
def _batch(scale: float, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(2, 3, 64, 128, generator=g)
    sem = F.one_hot(torch.randint(0, 19, (2, 64, 128), generator=g), 19).permute(0, 3, 1, 2).float()
    label = (torch.rand(2, 64, 128, generator=g) < 0.2).long()
    label[:, :2] = 255
    maps = {k: torch.rand(2, 1, 64, 128, generator=g) for k in ("entropy", "perceptual", "distance")}
    # the same large image for original and synthesis: the correlation Σ_c a·b = ‖a‖², far past fp16's 65504
    return {"original": img * scale, "synthesis": img * scale, "semantic": sem, "label": label, **maps}


def _cpu_supports(dtype: torch.dtype) -> bool:
    try:
        with torch.autocast("cpu", dtype=dtype):
            torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1))
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("ensemble", [None, "probability"])
def test_network_and_loss_stay_finite_under_autocast(dtype: torch.dtype, ensemble: str | None, monkeypatch) -> None:
    assert _cpu_supports(dtype), f"this torch's CPU autocast does not support {dtype}"  # 2.14 supports both
    seen: list[float] = []
    real = B.feature_correlation

    def spy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = real(a, b)
        seen.append(float(out.detach().abs().max()))
        assert out.dtype == torch.float32
        return out

    monkeypatch.setattr("reprolib.models.dissimilarity.feature_correlation", spy)
    module = DissimilarityModule({"width": 0.0625, "pretrained": False}, class_weights=[1.5, 20.0], ensemble_mode=ensemble)
    batch = _batch(scale=120.0)
    with torch.autocast("cpu", dtype=dtype):
        logits = module(batch)
        loss, prob = module.loss_and_prob(batch)
    assert max(seen) > 65504, f"the test must push the correlation past fp16's range, got {max(seen)}"
    assert torch.isfinite(logits).all() and torch.isfinite(prob).all() and torch.isfinite(loss)
    assert loss.dtype == torch.float32 and prob.dtype == torch.float32
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_fp32_forward_unchanged_by_the_autocast_guards() -> None:
    """Without autocast the guarded blocks run exactly as before (same kernels, same numbers)."""
    net = DissimilarityNet(DissimilarityConfig(width=0.0625, pretrained=False)).eval()
    b = _batch(scale=1.0)
    maps = {k: b[k] for k in ("entropy", "perceptual", "distance")}
    out = net(b["original"], b["synthesis"], b["semantic"], **maps)
    for block in net.decoder:
        block.fp32_input = False
    assert torch.equal(out, net(b["original"], b["synthesis"], b["semantic"], **maps))
