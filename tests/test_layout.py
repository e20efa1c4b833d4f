"""The CPU fast paths give the numbers of the plain PyTorch forms: SELU from exp, and channels-last convolutions
in the embedded segmentation and generator and in V's VGG19 (reprolib.models.layout)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprolib.backends.embedded import build_generator, build_segmentation
from reprolib.maps import PerceptualDifference
from reprolib.models import layout
from reprolib.models.blocks import SELU


def test_selu_matches_torch_in_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    # wide range, exact zeros and tiny negatives (where exp(x) − 1 loses relative precision)
    x = torch.cat([torch.randn(4096, generator=g) * 4, torch.zeros(8), -torch.rand(64, generator=g) * 1e-6])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = SELU()(a), F.selu(b)
    grad = torch.randn(out_a.shape, generator=g)
    out_a.backward(grad)
    out_b.backward(grad)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=3e-7)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-6)
    assert torch.equal(out_a[x > 0], out_b[x > 0])  # the positive side is the same product
    assert SELU()(torch.tensor([-100.0, 100.0])).isfinite().all()
    # in place on an intermediate tensor (as nn.SELU(inplace=True)), with the same gradient
    c = x.clone().requires_grad_()
    hidden = c * 1.0
    out_c = SELU()(hidden)
    assert out_c.data_ptr() == hidden.data_ptr()
    out_c.backward(grad)
    torch.testing.assert_close(c.grad, b.grad, rtol=1e-6, atol=1e-6)


def test_selu_keeps_channels_last():
    x = torch.randn(2, 8, 4, 6).contiguous(memory_format=torch.channels_last)
    assert SELU()(x).is_contiguous(memory_format=torch.channels_last)


@pytest.fixture
def nchw(monkeypatch):
    """Make every conv_layout caller run NCHW (the reference form)."""

    def use_nchw() -> None:
        for module in ("reprolib.backends.embedded", "reprolib.maps.perceptual"):
            monkeypatch.setattr(f"{module}.conv_layout", lambda device: torch.contiguous_format)

    return use_nchw


@pytest.mark.parametrize("kind", ["generator", "segmentation"])
def test_embedded_backends_channels_last_match_nchw(nchw, kind: str):
    g = torch.Generator().manual_seed(1)
    if kind == "generator":
        build, first = (lambda: build_generator("strong", seed=0)), (lambda net: net.inc[0][0])
        inputs, channels = torch.randint(0, 34, (2, 32, 64), generator=g), 3
    else:
        build, first = (lambda: build_segmentation("strong", seed=0)), (lambda net: net.stem[0][0])
        inputs, channels = torch.randn(2, 3, 32, 64, generator=g), 19
    # a random weighting: out.mean() makes BatchNorm's backward a cancellation of nearly equal terms
    weight = torch.randn(2, channels, 32, 64, generator=torch.Generator().manual_seed(3))
    net = build().train()
    out_cl = net(inputs)
    (out_cl * weight).sum().backward()
    grads_cl = [p.grad.clone() for p in net.parameters()]
    assert first(net).weight.is_contiguous(memory_format=torch.channels_last)
    assert out_cl.is_contiguous()  # what reads the output (H, D, the argmax, the losses) sees the plain layout
    ref = build().train()
    nchw()
    out_ref = ref(inputs)
    (out_ref * weight).sum().backward()
    assert first(ref).weight.is_contiguous()
    torch.testing.assert_close(out_cl, out_ref, rtol=1e-5, atol=1e-5)
    for g_cl, p in zip(grads_cl, ref.parameters(), strict=True):
        # measured ~4e-4 in every layer: BatchNorm's NHWC backward accumulates its sums in another order
        assert (g_cl - p.grad).norm() <= 2e-3 * p.grad.norm() + 1e-7


def test_perceptual_channels_last_matches_nchw(nchw):
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 32, 64, generator=g), torch.rand(2, 3, 32, 64, generator=g)
    v_cl = PerceptualDifference(pretrained=False)(a, b)
    nchw()
    v_ref = PerceptualDifference(pretrained=False)(a, b)
    torch.testing.assert_close(v_cl, v_ref, rtol=1e-4, atol=1e-4)


def test_layout_helpers():
    assert layout.conv_layout(torch.device("cpu")) is torch.channels_last
    assert layout.conv_layout(torch.device("meta")) is torch.contiguous_format
    conv = torch.nn.Conv2d(3, 4, 3)
    before = conv.weight
    layout.match_weight_layout(conv, torch.channels_last)
    assert conv.weight is before and conv.weight.is_contiguous(memory_format=torch.channels_last)
    t, none, flat = layout.to_layout(torch.channels_last, torch.zeros(1, 3, 2, 2), None, torch.zeros(3))
    assert t.is_contiguous(memory_format=torch.channels_last) and none is None and flat.dim() == 1


def _net_grads(net: torch.nn.Module, inputs: dict, channels_last: bool) -> dict[str, torch.Tensor]:
    net.channels_last = channels_last
    net.zero_grad(set_to_none=True)
    logits = net(**inputs)
    target = (inputs["entropy"][:, 0] > 0.7).long()
    F.cross_entropy(logits, target).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize(("batch", "encoder"), [(1, "vgg16"), (2, "vgg16"), (1, "resnet18")])
def test_dissimilarity_channels_last_gradients_match_nchw(batch, encoder):
    """Every parameter's gradient, NHWC against NCHW, batch 1 included: PyTorch's instance_norm backward is
    wrong for one sample when its incoming gradient is channels-last (what SPADE gets on the NHWC path)."""
    from reprolib.models import DissimilarityConfig, DissimilarityNet

    g = torch.Generator().manual_seed(batch)
    h, w = 32, 64
    inputs = {
        "original": torch.randn(batch, 3, h, w, generator=g),
        "synthesis": torch.randn(batch, 3, h, w, generator=g),
        "semantic": F.one_hot(torch.randint(0, 19, (batch, h, w), generator=g), 19).permute(0, 3, 1, 2).float(),
        **{k: torch.rand(batch, 1, h, w, generator=g) for k in ("entropy", "perceptual", "distance")},
    }
    net = DissimilarityNet(DissimilarityConfig.main(encoder=encoder, pretrained=False, width=0.125)).double()
    inputs = {k: v.double() for k, v in inputs.items()}
    nchw, nhwc = _net_grads(net, inputs, False), _net_grads(net, inputs, True)
    assert any(".norm1." in n for n in nchw)  # the SPADE layers are among those compared
    # float64, but the correlation channel is summed in float32 (in a layout-dependent order): ~1e-8 apart.
    # An absolute floor from the largest gradient: a bias feeding an instance norm has a gradient of exactly 0
    # in exact arithmetic, i.e. rounding noise in both layouts. The bug this guards against is off by O(1).
    scale = max(float(v.abs().max()) for v in nchw.values())
    for name in nchw:
        torch.testing.assert_close(nhwc[name], nchw[name], rtol=1e-6, atol=1e-6 * scale, msg=name)
