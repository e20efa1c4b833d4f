"""Uncertainty maps H, D, V (spec §2) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reprolib.maps import PerceptualDifference, quantize_8bit, softmax_distance, softmax_entropy


def _logits_from_probs(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp_min(1e-30))


def test_uniform_softmax_has_max_entropy_and_max_distance():
    logits = torch.zeros(2, 19, 4, 8)
    h = softmax_entropy(logits, norm="none")
    assert h.shape == (2, 1, 4, 8)
    torch.testing.assert_close(h, torch.full_like(h, math.log(19)))
    torch.testing.assert_close(softmax_entropy(logits, norm="paper"), torch.ones_like(h))
    torch.testing.assert_close(softmax_distance(logits, norm="paper"), torch.ones_like(h))


def test_one_hot_softmax_gives_zero_and_no_nan():
    logits = torch.full((1, 19, 4, 4), -1e4)
    logits[:, 3] = 1e4  # softmax is exactly one-hot in fp32
    for norm in ("original", "paper", "none"):
        h = softmax_entropy(logits, norm=norm)
        assert torch.isfinite(h).all()
        assert float(h.abs().max()) == 0.0
    d_paper = softmax_distance(logits, norm="paper")
    assert torch.isfinite(d_paper).all() and float(d_paper.abs().max()) == 0.0


def test_two_class_distance_known_values():
    p = torch.tensor([0.9, 0.6, 0.5]).view(1, 1, 1, 3)
    logits = _logits_from_probs(torch.cat((p, 1 - p), dim=1))
    d = softmax_distance(logits, norm="none").flatten()
    torch.testing.assert_close(d, torch.tensor([0.8, 0.2, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(softmax_distance(logits, norm="paper").flatten(), torch.tensor([0.2, 0.8, 1.0]),
                               atol=1e-6, rtol=0)
    # original: 1 − (d − min d)/max d = 1 − (d − 0)/0.8
    torch.testing.assert_close(softmax_distance(logits, norm="original").flatten(),
                               torch.tensor([0.0, 0.75, 1.0]), atol=1e-6, rtol=0)


def test_original_entropy_normalisation_divides_by_max_not_range():
    # three pixels with binary entropies h(p); original map = (h − min h) / max h, per image
    p = torch.tensor([0.5, 0.9, 0.99]).view(1, 1, 1, 3)
    logits = _logits_from_probs(torch.cat((p, 1 - p), dim=1))
    h = torch.tensor([-(q * math.log(q) + (1 - q) * math.log(1 - q)) for q in (0.5, 0.9, 0.99)])
    expected = (h - h.min()) / h.max()
    got = softmax_entropy(logits, norm="original").flatten()
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert float(got.min()) == 0.0 and float(got.max()) < 1.0  # min − min = 0; max < 1 since min h > 0
    # paper: log2 entropy / log2(2) → binary entropy in bits
    torch.testing.assert_close(softmax_entropy(logits, norm="paper").flatten(), h / math.log(2), atol=1e-6, rtol=0)


def test_maps_are_per_image_and_batched():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 19, 8, 16, generator=g) * 3
    b = torch.randn(1, 19, 8, 16, generator=g) * 0.3
    both = torch.cat((a, b))
    for fn in (softmax_entropy, softmax_distance):
        batched = fn(both)
        torch.testing.assert_close(batched[:1], fn(a))
        torch.testing.assert_close(batched[1:], fn(b))
        assert float(batched.min()) >= 0.0 and float(batched.max()) <= 1.0


def test_bad_logits_raise_value_error():
    with pytest.raises(ValueError, match="B,C,H,W"):
        softmax_entropy(torch.zeros(19, 4, 4))
    with pytest.raises(ValueError, match="norm"):
        softmax_distance(torch.zeros(1, 19, 4, 4), norm="log2")


def test_quantize_8bit_round_vs_truncate():
    x = torch.tensor([0.0, 0.5, 0.999, 1.0, 1.2, 0.3])
    # 0.5·255 = 127.5 rounds half-to-even → 128; fp32 0.3·255 = 76.5000… → 77 (round) / 76 (truncate)
    assert quantize_8bit(x, "round").tolist() == [0, 128, 255, 255, 255, 77]
    assert quantize_8bit(x, "truncate").tolist() == [0, 127, 254, 255, 255, 76]
    arr = quantize_8bit(np.array([0.5], dtype=np.float32), "truncate")
    assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr[0] == 127


@pytest.fixture(scope="module")
def perceptual():
    with pytest.warns(UserWarning, match="vgg19"):
        module = PerceptualDifference(pretrained=True, seed=0)  # the test cache is empty → warning + random init
    return module


def test_perceptual_difference_identical_images_is_zero(perceptual):
    x = torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    v = perceptual(x, x)
    assert v.shape == (2, 1, 64, 128)
    assert float(v.abs().max()) == 0.0


def test_perceptual_difference_range_and_locality(perceptual):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 64, 128, generator=g)
    r = x.clone()
    r[:, :, 16:48, 80:112] = torch.randn(1, 3, 32, 32, generator=g)  # change one patch only
    v = perceptual(x, r)
    assert float(v.min()) == 0.0 and float(v.max()) == pytest.approx(1.0)
    inside = v[..., 16:48, 80:112].mean()
    outside = v[..., :, :40].mean()
    assert inside > 3 * outside
    assert not any(p.requires_grad for p in perceptual.parameters())
    perceptual.train()
    assert not perceptual.vgg.training


def test_perceptual_difference_equals_the_originals_vgg19_difference(perceptual):
    """V against a transcription of the original's ``VGG19_difference`` on torchvision's own ``vgg19().features``:
    slices [0:2] [2:7] [7:12] [12:21] [21:30], channel-mean |F(x) − F(r)|, ``nn.Upsample`` bicubic ×1…×16,
    weights 1/32 … 1, then (x − min)/(max − min) per image (spec §2.3)."""
    import torchvision
    from torch import nn

    features = torchvision.models.vgg19(weights=None).features[:30].eval()
    theirs = {k[len("features."):]: v for k, v in
              ((t, perceptual.vgg.state_dict()[o]) for o, t in perceptual.vgg.torchvision_key_map().items())}
    features.load_state_dict(theirs, strict=True)
    slices = [features[a:b] for a, b in ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))]
    ups = [nn.Identity()] + [nn.Upsample(scale_factor=s, mode="bicubic", align_corners=False) for s in (2, 4, 8, 16)]
    g = torch.Generator().manual_seed(3)
    x, r = torch.randn(2, 3, 64, 128, generator=g), torch.randn(2, 3, 64, 128, generator=g)
    with torch.no_grad():
        fx, fr, total = x, r, 0.0
        for stage, up, w in zip(slices, ups, (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), strict=True):
            fx, fr = stage(fx), stage(fr)
            total = total + w * up(torch.mean(torch.abs(fx - fr), dim=1, keepdim=True))
        ref = torch.stack([(t - t.min()) / (t.max() - t.min()) for t in total])
        torch.testing.assert_close(perceptual(x, r), ref, rtol=0, atol=1e-5)
