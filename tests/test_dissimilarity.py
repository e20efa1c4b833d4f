"""Dissimilarity network: variants, parameter counts, original-checkpoint compatibility (spec §1, §8)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _make_dissimilarity import (
    FIXTURES,
    expected_logits,
    keyed_original_state_dict,
    original_inputs,
    relative_error,
    state_dict_entries,
)
from _make_keyed import keyed_state_dict

from reprolib.io import ReprolibDataError, save_torch
from reprolib.models import (
    DissimilarityConfig,
    DissimilarityNet,
    build_encoder,
    count_parameters,
    from_original_state_dict,
    to_original_state_dict,
)
from reprolib.models.original import original_prefix_map, variant_config

H, W = 64, 128
TOL = 1e-4


def _small_inputs(batch: int = 2, seed: int = 0, h: int = H, w: int = W) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 20, (batch, h, w), generator=g)
    return {
        "original": torch.randn(batch, 3, h, w, generator=g),
        "synthesis": torch.randn(batch, 3, h, w, generator=g),
        "semantic": torch.nn.functional.one_hot(labels, 20)[..., :19].permute(0, 3, 1, 2).float(),
        "entropy": torch.rand(batch, 1, h, w, generator=g),
        "perceptual": torch.rand(batch, 1, h, w, generator=g),
        "distance": torch.rand(batch, 1, h, w, generator=g),
    }


def _small(**kw) -> DissimilarityNet:
    return DissimilarityNet(DissimilarityConfig(width=0.25, pretrained=False, **kw)).eval()


VARIANTS = {
    "main": {},
    "baseline": {"uncertainty": False, "spade_decoder": False},
    "relu": {"activation": "relu"},
    "resnet18": {"encoder": "resnet18"},
    "resnet101": {"encoder": "resnet101", "spade_decoder": False},
    "no_semantic": {"semantic": False},  # spec bug #10 fixed: uncertainty without the semantic encoder
    "no_correlation": {"correlation": False},
    "wo_entropy": {"uncertainty_maps": ("perceptual", "distance")},
    "wo_distance": {"uncertainty_maps": ("entropy", "perceptual")},
    "wo_perceptual": {"uncertainty_maps": ("distance", "entropy")},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_output_shape_and_finite(name):
    model = _small(**VARIANTS[name])
    with torch.no_grad():
        out = model(**_small_inputs())
    assert out.shape == (2, 2, H, W)
    assert torch.isfinite(out).all()


def test_ablation_ignores_omitted_map_and_uses_kept_ones():
    model = _small(uncertainty_maps=("entropy", "perceptual"))
    assert model.uncertainty_encoder.stages[0].conv.in_channels == 2
    x = _small_inputs(batch=1)
    with torch.no_grad():
        ref = model(**x)
        other_distance = model(**{**x, "distance": 1 - x["distance"]})
        no_distance = model(**{**x, "distance": None})
        other_entropy = model(**{**x, "entropy": 1 - x["entropy"]})
    assert torch.equal(ref, other_distance) and torch.equal(ref, no_distance)
    assert (ref - other_entropy).abs().max() > 1e-3


def test_missing_map_and_bad_shapes_raise_clear_errors():
    model = _small()
    x = _small_inputs(batch=1)
    with pytest.raises(ValueError, match="perceptual"):
        model(**{**x, "perceptual": None})
    with pytest.raises(ValueError, match="divisible by 8"):
        model(**_small_inputs(batch=1, h=60, w=128))
    with pytest.raises(ValueError, match="semantic"):
        model(**{**x, "semantic": x["semantic"][:, :18]})
    with pytest.raises(ValueError, match="uncertainty_maps"):
        DissimilarityConfig(uncertainty_maps=("entropy", "logit"))
    with pytest.raises(ValueError, match="at least one map"):
        DissimilarityConfig(uncertainty_maps=())


def test_same_seed_same_model_and_joint_encoding_is_exact():
    a, b = _small(seed=3), _small(seed=3)
    c = _small(seed=4)
    x = _small_inputs(batch=1)
    with torch.no_grad():
        out_a, out_b, out_c = a(**x), b(**x), c(**x)
        # the batched (original ‖ synthesis) encoder pass equals two separate passes
        joint = a.encode_images(x["original"], x["synthesis"])
        sep = (a.encoder(x["original"]), a.encoder(x["synthesis"]))
    assert torch.equal(out_a, out_b)
    assert (out_a - out_c).abs().max() > 1e-3
    for f_joint, f_sep in zip(joint, sep, strict=True):
        for u, v in zip(f_joint, f_sep, strict=True):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)


def test_channels_last_and_backward():
    model = _small()
    x = _small_inputs(batch=1)
    with torch.no_grad():
        ref = model(**x)
        cl = model.to(memory_format=torch.channels_last)(
            **{k: v.contiguous(memory_format=torch.channels_last) for k, v in x.items()}
        )
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(**x), (x["entropy"][:, 0] > 0.5).long())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_cpu_default_runs_channels_last_and_matches_nchw():
    model = _small()
    x = _small_inputs(batch=2)
    seen = []
    hook = model.decoder[3].conv_a.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    assert model.memory_format(torch.device("cpu")) is torch.channels_last
    model.train()
    target = (x["entropy"][:, 0] > 0.5).long()
    out_cl = model(**x)
    torch.nn.functional.cross_entropy(out_cl, target).backward()
    grads_cl = [p.grad.clone() for p in model.parameters()]
    hook.remove()
    # the decoder's concatenated input stayed NHWC (a one-channel correlation map must not flip it to NCHW)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    assert out_cl.is_contiguous()
    model.zero_grad(set_to_none=True)
    model.channels_last = False
    out_ref = model(**x)
    torch.nn.functional.cross_entropy(out_ref, target).backward()
    torch.testing.assert_close(out_cl, out_ref, rtol=1e-4, atol=1e-4)
    for g, p in zip(grads_cl, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-3, atol=1e-4)


# -- parameter counts (spec §1.8), built on the meta device: no memory, no init -------------------------

SPEC_COUNTS = [
    (DissimilarityConfig.main(), 18_780_162),
    (DissimilarityConfig.baseline(), 13_798_530),
    (DissimilarityConfig.main(spade_decoder=False), 15_357_186),
    (DissimilarityConfig.baseline(spade_decoder=True), 17_221_506),
    (DissimilarityConfig.baseline(semantic=False), 13_207_106),
    (DissimilarityConfig.baseline(correlation=False), 13_792_194),
    (DissimilarityConfig.baseline(encoder="resnet18"), 17_365_346),  # ResNetDissimNet resnet18
]


@pytest.mark.parametrize(("config", "expected"), SPEC_COUNTS)
def test_parameter_counts_match_spec(config, expected):
    with torch.device("meta"):
        model = DissimilarityNet(DissimilarityConfig(**{**config.__dict__, "pretrained": False}))
    assert count_parameters(model) == expected


def test_main_parameter_breakdown_matches_spec():
    with torch.device("meta"):
        model = DissimilarityNet(variant_config("main"))
    assert count_parameters(model.encoder) == 7_635_264
    assert count_parameters(model.semantic_encoder) == 417_344
    assert count_parameters(model.uncertainty_encoder) == 1_558_656
    assert [count_parameters(model.decoder[j].conv_b) for j in (0, 2, 3)] == [1_814_784, 781_952, 376_128]


# -- original checkpoint layout (spec §1.9) ----------------------------------------------------------------

@pytest.mark.parametrize(("variant", "json_name"), [("main", "ours_prior_spadedecoder"),
                                                    ("baseline", "baseline_no_priors")])
def test_original_keys_and_shapes_map_both_ways(variant, json_name):
    entries = {k: tuple(s) for k, s in state_dict_entries(json_name)}
    with torch.device("meta"):
        model = DissimilarityNet(variant_config(variant))
    theirs = {k: tuple(v.shape) for k, v in to_original_state_dict(model).items()}
    assert theirs == entries
    # every pair of the explicit table is used, and the translation is a bijection
    pairs = original_prefix_map(model.config)
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
    for a, _ in pairs:
        assert any(k.startswith(a) for k in entries), a


def test_strict_loading_rejects_missing_extra_and_misshaped_keys(tmp_path):
    sd = keyed_original_state_dict("baseline")
    missing = {k: v for k, v in sd.items() if k != "conv13.0.weight"}
    with pytest.raises(ValueError, match=r"1 missing / 0 mis-shaped keys \(first: conv13.0.weight\); missing keys: conv13"):
        from_original_state_dict(missing, "baseline")
    with pytest.raises(ValueError, match=r"unexpected keys: extra.weight \(1\)"):
        from_original_state_dict({**sd, "extra.weight": torch.zeros(1)}, "baseline")
    with pytest.raises(ValueError, match=r"1 mis-shaped keys \(first: conv11.weight .*wrong shapes: conv11.weight \(1, 64"):
        from_original_state_dict({**sd, "conv11.weight": torch.zeros(1, 64, 1, 1)}, "baseline")
    with pytest.raises(ValueError, match="keys are those of the 'baseline' variant"):
        from_original_state_dict(sd, "main")
    with pytest.raises(ValueError, match="variant"):
        from_original_state_dict(sd, "ours")
    with pytest.raises(ValueError, match=r"checkpoint does not match the model config: \d+ missing / 0 mis-shaped keys.*"
                                          r"unexpected keys: 1 \(1\)"):
        from_original_state_dict({1: torch.zeros(1)}, "baseline")  # not an AttributeError from int.startswith
    path = tmp_path / "best_net_baseline_mult_3.pth"
    save_torch({"module." + k: v for k, v in missing.items()}, path)
    with pytest.raises(ReprolibDataError, match="best_net_baseline_mult_3.pth.*conv13.0.weight"):
        from_original_state_dict(path, "baseline")


# -- numerical fixture: keyed weights + fixed inputs reproduce the original logits (spec §8) --------------

@pytest.fixture(scope="module")
def fixture_inputs():
    inputs = original_inputs()
    sums = json.loads((FIXTURES / "original-dissimilarity-outputs-subset.json").read_text())["input_checksums"]
    for ours, theirs in (("original", "original"), ("synthesis", "synthesis"), ("semantic", "semantic"),
                         ("entropy", "entropy"), ("perceptual", "mae"), ("distance", "distance")):
        assert math.isclose(float(inputs[ours].double().sum()), sums[theirs]["sum"], rel_tol=1e-6), ours
    return inputs


@pytest.fixture(scope="module")
def main_model():
    return from_original_state_dict(keyed_original_state_dict("main"), "main").eval()


def test_main_reproduces_original_keyed_logits(main_model, fixture_inputs):
    with torch.no_grad():
        out = main_model(**fixture_inputs)
    assert relative_error(out, expected_logits("main")) <= TOL
    # …and a wiring change is far outside that tolerance: the maps swapped (entropy ↔ distance)
    with torch.no_grad():
        swapped = main_model(**{**fixture_inputs, "entropy": fixture_inputs["distance"],
                                "distance": fixture_inputs["entropy"]})
    assert relative_error(swapped, expected_logits("main")) > 100 * TOL


def test_main_round_trips_to_original_layout(main_model):
    sd = keyed_original_state_dict("main")
    back = to_original_state_dict(main_model)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_baseline_reproduces_original_keyed_logits(fixture_inputs):
    model = from_original_state_dict(keyed_original_state_dict("baseline"), "baseline").eval()
    with torch.no_grad():
        out = model(fixture_inputs["original"], fixture_inputs["synthesis"], fixture_inputs["semantic"])
    assert relative_error(out, expected_logits("baseline")) <= TOL


# -- ImageNet weights: local cache or path, never a download ---------------------------------------------

def test_pretrained_absent_warns_once_and_random_init(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="vgg16") as record:
        model = DissimilarityNet(DissimilarityConfig(width=1.0, pretrained=True, uncertainty=False,
                                                     spade_decoder=False))
    assert len([w for w in record if "ImageNet" in str(w.message)]) == 1
    assert model.encoder.stages[0][0].weight.abs().sum() > 0


def test_pretrained_loaded_from_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    g = torch.Generator().manual_seed(5)
    reference = build_encoder("vgg16", 1.0, pretrained=False)
    torchvision_sd = {}
    for ours, theirs in reference.torchvision_key_map().items():
        torchvision_sd[theirs] = torch.randn(reference.state_dict()[ours].shape, generator=g)
    torchvision_sd["classifier.0.bias"] = torch.zeros(4096)  # ignored, as in torchvision's file
    save_torch(torchvision_sd, tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    encoder = build_encoder("vgg16", 1.0, pretrained=True)
    encoder.init_weights(torch.Generator().manual_seed(0))
    assert torch.equal(encoder.stages[3][5].weight, torchvision_sd["features.21.weight"])
    assert torch.equal(encoder.stages[1][1].bias, torchvision_sd["features.5.bias"])

    # a wrong file is named, with torchvision's key names (a user compares them with their file's)
    wrong = tmp_path / "weights.pth"
    save_torch({"a": torch.zeros(1)}, wrong)
    with pytest.raises(ReprolibDataError, match=r"weights.pth \(vgg16 ImageNet weights\): not torchvision's vgg16: 20 "
                                                r"of its keys missing \(first: features.0.weight, features.0.bias"):
        build_encoder("vgg16", 1.0, pretrained=wrong).init_weights(torch.Generator().manual_seed(0))
    resnet = build_encoder("resnet18", 1.0, pretrained=False)
    save_torch({k: v for k, v in resnet.state_dict().items() if k != "layer1.0.conv1.weight"}, wrong)
    with pytest.raises(ReprolibDataError, match=r"weights.pth \(resnet18 ImageNet weights\): missing keys "
                                                r"\['layer1.0.conv1.weight'\]"):
        build_encoder("resnet18", 1.0, pretrained=wrong).init_weights(torch.Generator().manual_seed(0))


# -- the other variants the tables train: keyed weights reproduce the original's sampled logits (spec §8) -------

def _resnet_key(key: str) -> str | None:
    """Original ``ResNetDissimNet`` key → ours (encoder keys are torchvision's in both)."""
    if key.startswith("encoder."):
        return key
    if key.startswith("semantic_encoder.hidden_layers."):
        stage, layer, rest = key[len("semantic_encoder.hidden_layers."):].split(".", 2)
        return f"semantic_encoder.stages.{stage}.{'conv' if layer == '0' else 'bn'}.{rest}"
    blocks = {"conv1": "decoder.0.conv_a", "conv2": "decoder.0.conv_b", "conv12": "decoder.1.conv_a",
              "conv13": "decoder.1.conv_b", "conv3": "decoder.2.conv_a", "conv4": "decoder.2.conv_b",
              "conv5": "decoder.3.conv_a", "conv6": "decoder.3.conv_b"}
    plain = {"tconv1": "decoder.0.up", "tconv5": "decoder.1.up", "tconv2": "decoder.2.up", "tconv3": "upsample.0",
             "tconv4": "upsample.1", "conv10": "fuse.0", "conv9": "fuse.1", "conv8": "fuse.2", "conv7": "fuse.3",
             "conv11": "head"}
    name, rest = key.split(".", 1)
    if name in blocks and rest.startswith("0."):
        return f"{blocks[name]}.{rest[2:]}"
    return f"{plain[name]}.{rest}" if name in plain else None


OTHER_VARIANTS = {  # original variant: (our config, whether it takes the uncertainty maps)
    "no_semantic": (DissimilarityConfig.baseline(semantic=False, pretrained=False), False),
    "no_correlation": (DissimilarityConfig.baseline(correlation=False, pretrained=False), False),
    "prior_plain_decoder": (DissimilarityConfig.main(spade_decoder=False, pretrained=False), True),
    # Table 4's "w/o uncertainty maps" (prior: False keeps the SPADE decoder)
    "spadedecoder_no_priors": (DissimilarityConfig.baseline(spade_decoder=True, pretrained=False), False),
    "resnet18": (DissimilarityConfig.baseline(encoder="resnet18", pretrained=False), False),
}


@pytest.mark.parametrize("name", sorted(OTHER_VARIANTS))
def test_other_variants_reproduce_original_keyed_logits(name, fixture_inputs):
    from reprolib.models.original import _translate

    config, maps = OTHER_VARIANTS[name]
    entries = state_dict_entries(name)
    theirs = keyed_state_dict(entries)
    if config.encoder == "vgg16":
        pairs = original_prefix_map(config)
        ours = {_translate(k, pairs, reverse=False): v for k, v in theirs.items()}
    else:
        ours = {_resnet_key(k): v for k, v in theirs.items()}
    assert None not in ours, name
    model = DissimilarityNet(config).eval()
    model.load_state_dict(ours, strict=True)
    args = fixture_inputs if maps else {k: fixture_inputs[k] for k in ("original", "synthesis", "semantic")}
    with torch.no_grad():
        out = model(**args)
    ref = json.loads((FIXTURES / "original-dissimilarity-variants-subset.json").read_text())
    ref = ref["outputs"][name]["keyed"]["logits"]
    assert list(out.shape) == ref["shape"]
    for pos, value in ref["samples"].items():
        got = float(out[tuple(json.loads(pos))])
        assert abs(got - value) / (abs(value) + ref["std"]) <= TOL, (name, pos, got, value)
    assert abs(float(out.double().mean()) - ref["mean"]) <= TOL * ref["std"]
    assert float(out.double().std()) == pytest.approx(ref["std"], rel=TOL)
