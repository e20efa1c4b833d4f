"""CC-FPSE (generator + VAE encoder) and SPADE: layouts, strict loading, parity with the original networks
(fixtures from running giandbt/synboost's classes), adapters and the registry."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import reprolib.backends as backends
from reprolib.backends import ccfpse, spade
from reprolib.backends.base import ResynthesisBackend
from reprolib.backends.synthesis_blocks import SpectralNormConv2d, semantic_input
from reprolib.io import ReprolibDataError, load_torch, save_torch

sys.path.insert(0, str(Path(__file__).parent))
import _make_keyed  # noqa: E402
from _make_real_backends import FIXTURES, assert_matches, layout, outputs, zeros_state_dict  # noqa: E402


def fixture_labels() -> torch.Tensor:
    """The fixtures' labelIds: 16×16 blocks of random ids 0..34 (seed 3001), (1,256,512)."""
    coarse = torch.randint(0, 35, (1, 1, 16, 32), generator=torch.Generator().manual_seed(3001))
    return coarse.repeat_interleave(16, dim=2).repeat_interleave(16, dim=3)[:, 0]


def fixture_rgb01() -> torch.Tensor:
    rgb = torch.rand(1, 3, 256, 512, generator=torch.Generator().manual_seed(3002))
    return (rgb * 255).round() / 255


def keyed_sd(name: str, sn_svd: bool = True) -> dict[str, torch.Tensor]:
    sd = _make_keyed.keyed_state_dict(layout(name))
    return _make_keyed.keyed_sn_svd(sd) if sn_svd else sd


@pytest.fixture(scope="module")
def semantic() -> torch.Tensor:
    return semantic_input(fixture_labels())


@pytest.mark.parametrize("name,module,meta_name", [
    ("ccfpse-generator", ccfpse, "ccfpse-generator"), ("ccfpse-encoder", ccfpse, "ccfpse-encoder"),
    ("spade-generator", spade, None),
])
def test_layouts_match_published_checkpoints(name, module, meta_name):
    entries = layout(name)
    net = module.build_meta(meta_name) if meta_name else module.build_meta()
    sd = net.state_dict()
    assert list(sd) == [e.key for e in entries]  # same keys, same order
    assert {k: tuple(v.shape) for k, v in sd.items()} == {e.key: e.shape for e in entries}
    params = outputs("spade" if name.startswith("spade") else "ccfpse")["params"]
    role = "encoder" if name.endswith("encoder") else "generator"
    assert sum(p.numel() for p in net.parameters()) == params[role]["parameters"]
    assert _make_keyed.check_keyed_sums(_make_keyed.keyed_state_dict(entries), entries) == []


def test_semantic_input_matches_fixture(semantic):
    exp = outputs("ccfpse")["input_summaries"]
    assert float(semantic.sum()) == exp["semantic"]["sum"]
    assert float(semantic[:, 35].sum()) == exp["edges"]["sum"]
    with pytest.raises(ValueError, match="labelIds in 0..34"):
        semantic_input(torch.full((1, 4, 4), 255))
    with pytest.raises(ValueError, match="integer"):
        semantic_input(torch.zeros(1, 4, 4))


def test_spectral_norm_uses_stored_vectors():
    conv = SpectralNormConv2d(2, 3, 3, padding=1)
    sd = _make_keyed.keyed_state_dict((k, tuple(v.shape)) for k, v in conv.state_dict().items())
    conv.load_state_dict(sd)
    w = sd["weight_orig"].reshape(3, -1)
    assert torch.allclose(conv.sigma(), sd["weight_u"] @ (w @ sd["weight_v"]))
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.conv2d(x, sd["weight_orig"] / conv.sigma(), sd["bias"], padding=1)
    assert torch.allclose(conv(x), expected)
    assert list(conv.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]


def test_depthwise_conditional_conv_definition():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 27, 4, 5, generator=g)
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    ref = torch.zeros_like(x)
    for c in range(3):
        for ky in range(3):
            for kx in range(3):
                ref[:, c] += w[:, 9 * c + 3 * ky + kx] * xp[:, c, ky:ky + 4, kx:kx + 5]
    assert torch.allclose(ccfpse.depthwise_conditional_conv(x, w), ref, atol=1e-6)
    with pytest.raises(ValueError, match="conditional weights"):
        ccfpse.depthwise_conditional_conv(x, w[:, :9])


@pytest.mark.parametrize("setting", ["keyed", "keyed_sn_svd"])
def test_ccfpse_encoder_parity(setting):
    enc = ccfpse.from_original_state_dict(keyed_sd("ccfpse-encoder", setting == "keyed_sn_svd"), "ccfpse-encoder")
    with torch.no_grad():
        mu, logvar = enc(fixture_rgb01() * 2 - 1)
    exp = outputs("ccfpse")["outputs"][setting]["encoder"]
    assert_matches(mu, exp["mu"])
    assert_matches(logvar, exp["logvar"])
    for name, got in (("mu", mu), ("logvar", logvar)):
        ref = load_torch(FIXTURES / f"ccfpse-encoder-{name}-{setting}.pt")
        assert float((got - ref).abs().max()) <= 1e-4 * float(ref.std())


@pytest.fixture(scope="module")
def ccfpse_generator() -> ccfpse.CondConvGenerator:
    return ccfpse.from_original_state_dict(keyed_sd("ccfpse-generator"), "ccfpse-generator")


def test_ccfpse_generator_parity(ccfpse_generator, semantic):
    z = torch.randn(1, 256, generator=torch.Generator().manual_seed(3004))
    with torch.no_grad():
        y = ccfpse_generator(semantic, z)
    diffs = assert_matches(y, outputs("ccfpse")["outputs"]["keyed_sn_svd"]["generator_z_direct"]["image"])
    print("ccfpse generator max|Δ|/std:", diffs)
    with pytest.raises(ValueError, match="exactly 256×512"):
        ccfpse_generator(semantic[..., :128, :256], z)


def test_ccfpse_adapter_is_the_original_pipeline(ccfpse_generator):
    """labelIds + [0,1] image → E → z = mu + ε·exp(logvar/2) → G: the fixture's pipeline with ε of seed 3003."""
    enc = ccfpse.from_original_state_dict(keyed_sd("ccfpse-encoder"), "ccfpse-encoder")
    resyn = ccfpse.CCFPSEResynthesis(ccfpse_generator, enc, seed=3003)
    assert isinstance(resyn, ResynthesisBackend)
    with torch.no_grad():
        rgb = resyn(fixture_labels(), image=fixture_rgb01())
    exp = dict(outputs("ccfpse")["outputs"]["keyed_sn_svd"]["pipeline"]["image"])
    # the adapter returns [0,1]; the fixture is the tanh output in (−1,1)
    tanh = rgb * 2 - 1
    assert_matches(tanh, exp)
    assert rgb.min() >= 0 and rgb.max() <= 1


def test_ccfpse_adapter_resizes_and_is_deterministic():
    """Smaller inputs go through the fixed 256×512 generator and come back at their own size. Zero
    weights keep this fast-to-build; what is checked is the resizing and the seed."""
    sd = zeros_state_dict(layout("ccfpse-generator"))
    for key in sd:  # spectral norm divides by u·(Wv): keep it non-zero
        if key.endswith(("weight_orig", "weight_u", "weight_v")):
            sd[key] = torch.ones_like(sd[key])
    gen = ccfpse.from_original_state_dict(sd, "ccfpse-generator")
    enc = ccfpse.from_original_state_dict(keyed_sd("ccfpse-encoder"), "ccfpse-encoder")
    resyn = ccfpse.CCFPSEResynthesis(gen, enc, seed=5)
    z1 = resyn.style_code(2, torch.rand(2, 3, 40, 80, generator=torch.Generator().manual_seed(0)))
    z2 = resyn.style_code(2, torch.rand(2, 3, 40, 80, generator=torch.Generator().manual_seed(0)))
    assert z1.shape == (2, 256) and torch.equal(z1, z2)
    assert not torch.equal(z1, ccfpse.CCFPSEResynthesis(gen, enc, seed=6).style_code(2, torch.rand(2, 3, 40, 80)))
    labels = torch.randint(0, 34, (1, 40, 80), generator=torch.Generator().manual_seed(1))
    resyn.train()
    assert not resyn.generator.training and not resyn.encoder.training
    with torch.no_grad():
        out = resyn(labels, image=torch.rand(1, 3, 40, 80))
    assert out.shape == (1, 3, 40, 80)
    # all-zero weights: conv_img's output is 0, tanh(0) = 0 → mid-grey
    assert torch.allclose(out, torch.full_like(out, 0.5))
    with pytest.raises(ValueError, match="3 images for 1 label maps"):
        resyn(labels, image=torch.rand(3, 3, 40, 80))


def test_spade_parity_both_settings(semantic):
    for setting in ("keyed_sn_svd", "keyed"):
        gen = spade.from_original_state_dict(keyed_sd("spade-generator", setting == "keyed_sn_svd"))
        with torch.no_grad():
            y = gen(semantic)
        exp = outputs("spade")["outputs"][setting]
        print("spade", setting, assert_matches(y, exp["image"]))
        # the recorded per-module sigma (stored-vector rule, any sign for the plain keyed setting)
        for module, sigma in exp["sigma_generator"].items():
            got = float(gen.get_submodule(module).sigma().detach())
            assert abs(got - sigma) <= 1e-5 * abs(sigma), module


def test_spade_adapter_and_registry(tmp_path, semantic):
    sd = keyed_sd("spade-generator")
    path = tmp_path / "latest_net_G.pth"
    save_torch(sd, path)
    resyn = backends.get_resynthesis("spade", checkpoint=path)
    assert isinstance(resyn, spade.SPADEResynthesis) and not resyn.training
    labels = fixture_labels()
    with torch.no_grad():
        rgb = resyn(labels)
        raw = resyn.generator(semantic)
        small = resyn(labels[:, ::4, ::4])
    assert torch.allclose(rgb, (raw + 1) / 2, atol=1e-6)
    assert small.shape == (1, 3, 64, 128)
    assert isinstance(backends.from_original_state_dict(sd, "spade-generator"), spade.SPADEGenerator)
    with pytest.raises(ValueError, match="one network"):
        spade.from_original_state_dict(sd, "spade-encoder")


def test_ccfpse_registry_and_checkpoint_errors(tmp_path, monkeypatch):
    gen_path, enc_path = tmp_path / "latest_net_G.pth", tmp_path / "latest_net_E.pth"
    save_torch({"module." + k: v for k, v in zeros_state_dict(layout("ccfpse-generator")).items()}, gen_path)
    save_torch({"state_dict": keyed_sd("ccfpse-encoder")}, enc_path)
    monkeypatch.setenv("REPROLIB_CKPT_CCFPSE_GENERATOR", str(gen_path))
    monkeypatch.setenv("REPROLIB_CKPT_CCFPSE_ENCODER", str(enc_path))
    resyn = backends.get_resynthesis("ccfpse")
    assert isinstance(resyn, ccfpse.CCFPSEResynthesis) and resyn.encoder is not None
    assert isinstance(backends.from_original_state_dict(keyed_sd("ccfpse-encoder"), "ccfpse-encoder"),
                      ccfpse.ConvEncoder)
    without_encoder = ccfpse.load_resynthesis(gen_path)
    assert without_encoder.encoder is None
    bad = zeros_state_dict(layout("ccfpse-encoder"))
    bad["layer6.0.weight_orig"] = torch.zeros(512, 512, 4, 4)
    del bad["fc_var.bias"]
    save_torch(bad, enc_path)
    with pytest.raises(ReprolibDataError) as err:
        ccfpse.load_resynthesis(gen_path, enc_path)
    msg = str(err.value)
    assert "latest_net_E.pth" in msg and "missing keys: fc_var.bias" in msg and "layer6.0.weight_orig" in msg
    with pytest.raises(ValueError, match="unknown CC-FPSE network"):
        ccfpse.build_meta("ccfpse-discriminator")
