"""ICNet (Fast_Seg): layout, strict loading, parity with the original, adapter; plus the shared keyed fixture
helpers of ``tests/_make_keyed.py`` (rule, spectral-norm variant, layout parsing) and the checkpoint unwrapping
of ``reprolib.backends.keyed``."""

from __future__ import annotations

import math
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import reprolib.backends as backends
from reprolib.backends import icnet as ic
from reprolib.backends import keyed
from reprolib.backends.base import SegmentationBackend, imagenet_normalize
from reprolib.io import ReprolibDataError, load_torch, save_torch, write_text

sys.path.insert(0, str(Path(__file__).parent))
import _make_keyed  # noqa: E402
from _make_real_backends import (  # noqa: E402
    FIXTURES,
    assert_matches,
    imagenet_fixture_input,
    layout,
    outputs,
    zeros_state_dict,
)


@pytest.fixture(scope="module")
def keyed_sd() -> dict[str, torch.Tensor]:
    return _make_keyed.keyed_state_dict(layout("icnet"))


@pytest.fixture(scope="module")
def keyed_net(keyed_sd) -> ic.ICNet:
    return ic.from_original_state_dict(keyed_sd)


@pytest.fixture(scope="module")
def fixture_outputs(keyed_net) -> list[torch.Tensor]:
    x = _make_keyed.fixture_rgb(128, 256)[:, [2, 1, 0]] * 255 - torch.tensor(ic.BGR_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        return keyed_net(x)


def test_layout_matches_published_checkpoint(keyed_sd):
    entries = layout("icnet")
    sd = ic.build_meta().state_dict()
    assert len(entries) == 417
    assert list(sd) == [e.key for e in entries]
    assert {k: tuple(v.shape) for k, v in sd.items()} == {e.key: e.shape for e in entries}
    assert sum(p.numel() for p in ic.build_meta().parameters()) == outputs("icnet")["params"]["parameters"]
    assert _make_keyed.check_keyed_sums(keyed_sd, entries) == []


def test_fixture_parity_128x256(fixture_outputs):
    exp = outputs("icnet")["outputs"]["keyed"]["128x256"]
    assert [list(o.shape) for o in fixture_outputs] == [exp[f"out{i}"]["shape"] for i in range(4)]
    report = {}
    for i, out in enumerate(fixture_outputs):
        report[f"out{i}"] = assert_matches(out, exp[f"out{i}"])
    for i in (1, 2, 3):  # full tensors recorded for the auxiliary outputs
        ref = load_torch(FIXTURES / f"icnet-out{i}-keyed-128x256.pt")
        rel = float((fixture_outputs[i] - ref).abs().max()) / float(exp[f"out{i}"]["std"])
        assert rel <= 1e-4, (i, rel)
        report[f"out{i}"]["full"] = rel
    print("icnet keyed 128x256 max|Δ|/std:", report)


def test_fixture_parity_256x512(keyed_net):
    exp = outputs("icnet")["outputs"]["keyed"]["256x512"]
    x = _make_keyed.fixture_rgb(256, 512)[:, [2, 1, 0]] * 255 - torch.tensor(ic.BGR_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        outs = keyed_net(x)
    report = {f"out{i}": assert_matches(out, exp[f"out{i}"]) for i, out in enumerate(outs)}
    print("icnet keyed 256x512 max|Δ|/std:", report)


def test_adapter_matches_raw_network_on_imagenet_input(keyed_net, fixture_outputs):
    seg = ic.ICNetSegmentation(keyed_net)
    assert isinstance(seg, SegmentationBackend)
    x = imagenet_fixture_input(128, 256)
    # ImageNet-normalised RGB → caffe BGR round-trips to the fixture's input up to float rounding
    bgr = ic.imagenet_to_caffe_bgr(x)
    expected_in = _make_keyed.fixture_rgb(128, 256)[:, [2, 1, 0]] * 255 - torch.tensor(ic.BGR_MEAN).view(1, 3, 1, 1)
    assert float((bgr - expected_in).abs().max()) < 1e-3
    with torch.no_grad():
        y = seg(x)
    assert y.shape == (1, 19, 128, 256)
    std = float(fixture_outputs[0].std())
    assert float((y - fixture_outputs[0]).abs().max()) <= 1e-4 * std


def test_shapes_at_small_sizes_and_adapter_resize(keyed_net):
    x = torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(1)) * 50
    with torch.no_grad():
        outs = keyed_net(x)
    # the ceil-mode max-pool makes the 1/16 branch 5×9, not 4×8
    assert [tuple(o.shape) for o in outs] == [(2, 19, 64, 128), (2, 19, 16, 32), (2, 19, 8, 16), (2, 19, 5, 9)]
    seg = ic.ICNetSegmentation(keyed_net, bgr_mean=ic.BGR_MEAN_TRAINING)
    seg.train()
    assert not seg.net.training
    with torch.no_grad():
        y = seg(torch.randn(1, 3, 60, 100, generator=torch.Generator().manual_seed(2)))
        y2 = seg(torch.randn(1, 3, 60, 100, generator=torch.Generator().manual_seed(2)))
    assert y.shape == (1, 19, 60, 100) and torch.isfinite(y).all()
    assert torch.equal(y, y2)  # CPU runs repeat exactly
    with pytest.raises(ValueError, match="bgr_mean"):
        ic.ICNetSegmentation(keyed_net, bgr_mean=(1.0, 2.0))


def test_strict_load_layout_prefix_and_wrapper():
    sd = zeros_state_dict(layout("icnet"))
    sd["head.conv_cls.weight"] = torch.full((19, 128, 1, 1), 0.5)
    for variant in (sd, {"module." + k: v for k, v in sd.items()}, {"state_dict": sd}):
        net = ic.from_original_state_dict(variant)
        assert isinstance(net, ic.ICNet) and not net.training
        assert torch.equal(net.head.conv_cls.weight, sd["head.conv_cls.weight"])
    assert isinstance(backends.from_original_state_dict(sd, "icnet"), ic.ICNet)


@pytest.mark.parametrize("defect", ["missing", "unexpected", "shape"])
def test_strict_load_refuses_defects(defect):
    sd = zeros_state_dict(layout("icnet"))
    if defect == "missing":
        del sd["backbone.layer3.5.bn3.running_mean"]
        needle = "missing keys: backbone.layer3.5.bn3.running_mean"
    elif defect == "unexpected":
        sd["backbone.dsn.0.weight"] = torch.zeros(512, 1024, 3, 3)
        needle = "unexpected keys: backbone.dsn.0.weight"
    else:
        sd["backbone.head.bottleneck.0.weight"] = torch.zeros(512, 4096, 1, 1)  # a 1×1 PSP bottleneck
        needle = "backbone.head.bottleneck.0.weight (512, 4096, 1, 1) (expected (512, 4096, 3, 3))"
    with pytest.raises(ValueError) as err:
        ic.from_original_state_dict(sd)
    assert needle in str(err.value) and "icnet" in str(err.value)


def test_load_segmentation_and_registry(tmp_path, keyed_sd):
    path = tmp_path / "icnet_final.pth"
    save_torch(keyed_sd, path)
    seg = backends.get_segmentation("icnet", checkpoint=path)
    assert isinstance(seg, ic.ICNetSegmentation) and not seg.training
    assert torch.equal(seg.net.conv_sub1[0].conv.weight, keyed_sd["conv_sub1.0.conv.weight"])
    bad = tmp_path / "not_a_state_dict.pth"
    save_torch([1, 2, 3], bad)
    with pytest.raises(ReprolibDataError, match="not_a_state_dict.pth"):
        ic.load_segmentation(bad)
    with pytest.raises(ReprolibDataError, match="not found"):
        ic.load_segmentation(tmp_path / "absent.pth")


# ---------------------------------------------------------------------------------------------------------
# keyed fixture helpers (tests/_make_keyed.py) and checkpoint loading (reprolib.backends.keyed)


def test_keyed_rule_by_entry_kind():
    g = torch.Generator().manual_seed(zlib.crc32(b"a.conv.weight"))
    t = torch.randn((4, 2, 3, 3), generator=g)
    assert torch.equal(_make_keyed.keyed_value("a.conv.weight", [4, 2, 3, 3]), t * math.sqrt(2 / 18))
    t1 = torch.randn((5,), generator=torch.Generator().manual_seed(zlib.crc32(b"a.bn.running_var")))
    assert torch.equal(_make_keyed.keyed_value("a.bn.running_var", (5,)), 1 + 0.1 * t1.abs())
    assert _make_keyed.keyed_value("a.bn.num_batches_tracked", ()) is None
    bias = _make_keyed.keyed_value("a.conv.bias", (1000,))
    scale = _make_keyed.keyed_value("a.bn.weight", (1000,))
    assert abs(float(bias.std()) - 0.05) < 0.01 and abs(float(scale.mean()) - 1) < 0.02
    sd = _make_keyed.keyed_state_dict([("x.num_batches_tracked", ()), ("x.bias", (3,))])
    assert sd["x.num_batches_tracked"].dtype == torch.long and int(sd["x.num_batches_tracked"]) == 0


def test_keyed_sn_svd_gives_top_singular_pair():
    sd = _make_keyed.keyed_state_dict([("c.weight_orig", (6, 4, 3, 3)), ("c.weight_u", (6,)), ("c.weight_v", (36,)),
                                 ("c.bias", (6,))])
    out = _make_keyed.keyed_sn_svd(sd)
    w = sd["c.weight_orig"].reshape(6, -1).double()
    u, v = out["c.weight_u"].double(), out["c.weight_v"].double()
    sigma = float(u @ (w @ v))
    assert abs(sigma - float(torch.linalg.matrix_norm(w, ord=2))) < 1e-5 * sigma
    assert torch.equal(out["c.bias"], sd["c.bias"])
    with pytest.raises(ValueError, match="weight_u"):
        _make_keyed.keyed_sn_svd({"d.weight_orig": torch.zeros(2, 2)})


def test_read_layout_and_unwrap_errors(tmp_path):
    bad = tmp_path / "bad-state-dict.json"
    write_text(bad, '[["k", [2, "x"], "float32", 1.0]]')
    with pytest.raises(ReprolibDataError, match="entry 0"):
        _make_keyed.read_layout(bad)
    with pytest.raises(ValueError, match="not name → tensor"):
        keyed.unwrap_state_dict({"a": 1.0})
    with pytest.raises(ValueError, match="got list"):
        keyed.unwrap_state_dict([torch.zeros(1)])
    # a prefix on only some keys is not DataParallel's: kept as is (and refused later by the strict check)
    mixed = keyed.unwrap_state_dict({"module.a": torch.zeros(1), "b": torch.zeros(1)})
    assert set(mixed) == {"module.a", "b"}


def test_checkpoint_with_numpy_scalars_loads_weights_only(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_torch({"state_dict": {"module.w": torch.ones(2)}, "mean_iu": np.float64(0.5), "hist": np.zeros(3)}, path)
    assert list(keyed.load_checkpoint_state_dict(path)) == ["w"]
    # the fixture image is quantised to 8-bit levels
    rgb = _make_keyed.fixture_rgb(4, 8)
    assert torch.equal((rgb * 255).round() / 255, rgb)
    assert imagenet_normalize(rgb).shape == (1, 3, 4, 8)
