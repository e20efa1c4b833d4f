"""DeepWV3Plus (DeepLabV3+ / WideResNet38): layout, strict loading, parity with the original, adapter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import reprolib.backends as backends
from reprolib.backends import deepwv3plus as dw
from reprolib.backends.base import SegmentationBackend
from reprolib.io import ReprolibDataError, save_torch

sys.path.insert(0, str(Path(__file__).parent))
import _make_keyed  # noqa: E402
from _make_real_backends import (  # noqa: E402
    assert_matches,
    imagenet_fixture_input,
    layout,
    outputs,
    zeros_state_dict,
)


@pytest.fixture(scope="module")
def keyed_sd() -> dict[str, torch.Tensor]:
    return _make_keyed.keyed_state_dict(layout("deepwv3plus"))


@pytest.fixture(scope="module")
def keyed_net(keyed_sd) -> dw.DeepWV3Plus:
    return dw.from_original_state_dict(keyed_sd)


def test_layout_matches_published_checkpoint():
    entries = layout("deepwv3plus")
    sd = dw.build_meta().state_dict()
    assert len(entries) == 268
    assert list(sd) == [e.key for e in entries]  # same keys, same order
    assert {k: tuple(v.shape) for k, v in sd.items()} == {e.key: e.shape for e in entries}
    meta = dw.build_meta()
    assert sum(p.numel() for p in meta.parameters()) == outputs("deepwv3plus")["params"]["parameters"]


def test_keyed_values_match_recorded_sums(keyed_sd):
    assert _make_keyed.check_keyed_sums(keyed_sd, layout("deepwv3plus")) == []
    # the rule is keyed on the bare name: a prefixed key gives a different tensor
    assert not torch.equal(_make_keyed.keyed_value("module.mod1.conv1.weight", (64, 3, 3, 3)), keyed_sd["mod1.conv1.weight"])


def test_fixture_parity_128x256(keyed_net):
    exp = outputs("deepwv3plus")["outputs"]["keyed"]["128x256"]
    x = imagenet_fixture_input(128, 256)
    assert _make_keyed.compare_to_summary(x, exp["input"])["std"] < 1e-6
    with torch.no_grad():
        y = keyed_net(x)
    diffs = assert_matches(y, exp["logits"])
    print("deepwv3plus keyed 128x256 max|Δ|/std:", diffs)


def test_strict_load_of_published_layout_and_prefix():
    entries = layout("deepwv3plus")
    sd = zeros_state_dict(entries)
    net = dw.from_original_state_dict(sd)
    assert isinstance(net, dw.DeepWV3Plus) and not net.training
    assert all(not t.is_meta for t in net.state_dict().values())
    # the NVIDIA file: {"state_dict": {"module.<key>": ...}, "epoch": ..., ...}
    sd["mod1.conv1.weight"] = torch.ones(64, 3, 3, 3)
    wrapped = {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}
    net = dw.from_original_state_dict(wrapped)
    assert torch.equal(net.mod1.conv1.weight, torch.ones(64, 3, 3, 3))


@pytest.mark.parametrize("defect", ["missing", "unexpected", "shape"])
def test_strict_load_refuses_defects(defect):
    sd = zeros_state_dict(layout("deepwv3plus"))
    if defect == "missing":
        del sd["aspp.features.2.1.running_var"]
        needle = "missing keys: aspp.features.2.1.running_var"
    elif defect == "unexpected":
        sd["bn_out.weight"] = torch.zeros(4096)  # the trunk's bn_out is not part of DeepWV3Plus
        needle = "unexpected keys: bn_out.weight"
    else:
        sd["final.6.weight"] = torch.zeros(20, 256, 1, 1)  # a 20-class head
        needle = "final.6.weight (20, 256, 1, 1) (expected (19, 256, 1, 1))"
    with pytest.raises(ValueError) as err:
        dw.from_original_state_dict({"module." + k: v for k, v in sd.items()})
    assert needle in str(err.value) and "deepwv3plus" in str(err.value)


def test_adapter_shape_resolution_and_equality(keyed_net):
    seg = dw.DeepWV3PlusSegmentation(keyed_net)
    assert isinstance(seg, SegmentationBackend)
    seg.train()  # the frozen backbone must stay in eval (BN running stats)
    assert not seg.net.training
    x = torch.randn(2, 3, 33, 47, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = seg(x)
        again = keyed_net(x[1:])
    assert y.shape == (2, 19, 33, 47)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[1:], again, rtol=1e-5, atol=1e-3)  # batch-independent, deterministic
    with pytest.raises(ValueError, match="B,3,H,W"):
        seg(torch.zeros(1, 1, 16, 16))


def test_load_segmentation_from_nvidia_style_file(tmp_path, keyed_sd):
    path = tmp_path / "cityscapes_best.pth"
    save_torch({"state_dict": {"module." + k: v for k, v in keyed_sd.items()}, "epoch": 174,
                "mean_iu": np.float64(0.8148)}, path)
    seg = dw.load_segmentation(path)
    assert isinstance(seg, dw.DeepWV3PlusSegmentation) and not seg.net.training
    assert torch.equal(seg.net.final[6].weight, keyed_sd["final.6.weight"])
    # the registry dispatches to this module
    net = backends.from_original_state_dict(keyed_sd, "deepwv3plus")
    assert isinstance(net, dw.DeepWV3Plus)

    bad = tmp_path / "truncated.pth"
    save_torch({"state_dict": {"module.mod1.conv1.weight": keyed_sd["mod1.conv1.weight"]}}, bad)
    with pytest.raises(ReprolibDataError) as err:
        dw.load_segmentation(bad)
    assert "truncated.pth" in str(err.value) and "missing keys" in str(err.value)
