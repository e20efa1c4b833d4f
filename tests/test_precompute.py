"""Precompute cache: layout, value ranges, cache hits, resume after a kill, atomicity."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import reprolib.precompute as pc
import reprolib.precompute.compute as pc_compute
from reprolib.backends import build_generator, build_segmentation, imagenet_normalize
from reprolib.io import ReprolibDataError, read_json, read_png, write_png
from reprolib.labels import label_to_train
from reprolib.precompute import GeneratedSplitSource, precompute

sys.path.insert(0, str(Path(__file__).parent))
from _make_backends import TinyAnomalyDataset, make_generated_split  # noqa: E402

SIZE = (64, 128)
DIRS = ("original", "semantic", "synthesis", "labels", "entropy", "logit_distance", "mae_features")


class MeanAbsDiff(nn.Module):
    """Cheap stand-in for the VGG perceptual difference: per-pixel mean |a − b|, min–max scaled."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = (a - b).abs().mean(1, keepdim=True)
        lo, hi = d.amin((2, 3), keepdim=True), d.amax((2, 3), keepdim=True)
        return (d - lo) / (hi - lo).clamp_min(1e-12)


class Sharpened(nn.Module):
    """An untrained net's logits are nearly uniform, so the original's (H − min)/max entropy map would be
    all zeros in 8 bit; scaling the logits gives maps with real spread, like a trained net's."""

    name = "sharpened"

    def __init__(self, net: nn.Module, scale: float = 30.0):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image) * self.scale


@pytest.fixture(scope="module")
def backends() -> tuple[nn.Module, nn.Module]:
    return Sharpened(build_segmentation("light", seed=0)).eval(), build_generator("light", seed=0).eval()


@pytest.fixture(scope="module")
def gen_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_generated_split(tmp_path_factory.mktemp("gen"), n=5, size=SIZE, seed=0)


def _run(src, backends, out, **kw) -> Path:  # noqa: ANN001
    seg, gen = backends
    return precompute(src, seg, gen, out, size=SIZE, batch_size=2, perceptual=MeanAbsDiff(), progress=False, **kw)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_generated_split_layout_and_values(gen_split: Path, backends, tmp_path: Path) -> None:  # noqa: ANN001
    out = _run(gen_split, backends, tmp_path)
    stems = sorted(p.stem for p in (gen_split / "original").glob("*.png"))
    for d in DIRS:
        assert sorted(p.stem for p in (out / d).glob("*.png")) == stems, d
    done = read_json(out / "done.json")
    assert done["n_images"] == done["n_computed"] == 5 and done["label_source"] == "ground_truth"
    assert done["images_per_second"] > 0
    s = stems[0]
    # generated data: semantic/ is the altered ground truth, labels are copied, original kept exactly
    assert np.array_equal(read_png(out / "semantic" / f"{s}.png"), read_png(gen_split / "semantic" / f"{s}.png"))
    assert np.array_equal(read_png(out / "labels" / f"{s}.png"), read_png(gen_split / "labels" / f"{s}.png"))
    assert np.array_equal(read_png(out / "original" / f"{s}.png"), read_png(gen_split / "original" / f"{s}.png"))
    assert read_png(out / "synthesis" / f"{s}.png", mode="RGB").shape == (*SIZE, 3)
    for d in ("entropy", "logit_distance", "mae_features"):
        m = read_png(out / d / f"{s}.png")
        assert m.dtype == np.uint8 and m.shape == SIZE and m.max() > m.min(), d
    assert read_png(out / "mae_features" / f"{s}.png").max() >= 254  # min–max scaled map reaches the top
    assert not _temps(tmp_path)


def test_prediction_source_for_anomaly_dataset(backends, tmp_path: Path) -> None:  # noqa: ANN001
    ds = TinyAnomalyDataset(n=3, size=SIZE, seed=2)
    out = _run(ds, backends, tmp_path)
    item = ds[1]
    for d in ("labels", "labels_with_ROI"):
        assert np.array_equal(read_png(out / d / f"{item['name']}.png"), item["label"].numpy().astype(np.uint8))
    seg = backends[0]
    image8 = (item["image"] * 255).round() / 255
    with torch.no_grad():
        pred = seg(imagenet_normalize(image8[None])).argmax(1)[0].numpy()
    assert np.array_equal(read_png(out / "semantic" / f"{item['name']}.png"), pred.astype(np.uint8))
    assert read_json(out / "done.json")["label_source"] == "prediction"


def test_cityscapes_like_items_give_void_labels(backends, tmp_path: Path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    label_ids = rng.choice([0, 7, 26], size=SIZE).astype(np.int64)
    items = [{"image": torch.rand(3, *SIZE), "label_ids": torch.from_numpy(label_ids),
              "train_ids": torch.from_numpy(label_to_train(label_ids).astype(np.int64)), "name": "c_000000_000001"}]
    out = _run(items, backends, tmp_path)
    lab = read_png(out / "labels" / "c_000000_000001.png")
    assert set(np.unique(lab)) <= {0, 255} and np.array_equal(lab == 255, label_ids == 0)


def test_cache_hit_does_no_work(gen_split: Path, backends, tmp_path: Path,  # noqa: ANN001
                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = _run(gen_split, backends, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    def boom(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("cache hit must not compute")

    monkeypatch.setattr(pc_compute, "_process_batch", boom)
    t0 = time.perf_counter()
    assert _run(gen_split, backends, tmp_path) == out
    assert time.perf_counter() - t0 < 2.0
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    monkeypatch.undo()
    # anything that changes the bytes lands in another folder
    other_seg = Sharpened(build_segmentation("light", seed=1)).eval()
    keys = {out, _run(gen_split, (other_seg, backends[1]), tmp_path),
            _run(gen_split, backends, tmp_path, key_params={"profile": "x"}),
            _run(gen_split, backends, tmp_path, label_source="prediction")}
    assert len(keys) == 4


def test_resume_after_kill_matches_uninterrupted(gen_split: Path, backends, tmp_path: Path,  # noqa: ANN001
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    clean = _run(gen_split, backends, tmp_path / "clean")
    real_write, calls = pc_compute._write_item, []

    def dying_write(*a, **k):  # noqa: ANN002, ANN003
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after 3 images: batch 0 done, batch 1 half written
        calls.append(a[1])
        real_write(*a, **k)

    monkeypatch.setattr(pc_compute, "_write_item", dying_write)
    with pytest.raises(KeyboardInterrupt):
        _run(gen_split, backends, tmp_path / "resumed")
    monkeypatch.undo()
    part = tmp_path / "resumed" / clean.name
    assert not (part / "done.json").exists() and not _temps(tmp_path)
    resumed = _run(gen_split, backends, tmp_path / "resumed")
    assert resumed == part
    done = read_json(resumed / "done.json")
    assert done["n_computed"] == 3  # batch 0 skipped; batch 1 (partial) and batch 2 computed
    assert _snapshot(resumed) == _snapshot(clean)


def test_stops_between_batches_when_asked_and_resumes(gen_split: Path, backends, tmp_path: Path) -> None:  # noqa: ANN001
    """``before_work`` (a session's deadline) is asked before each batch with work; what it raises stops the split
    between batches, and the next call computes only the rest, to the uninterrupted bytes."""
    clean = _run(gen_split, backends, tmp_path / "clean")
    asked = []

    class Deadline(Exception):
        pass

    def deadline_after_two_batches() -> None:
        asked.append(1)
        if len(asked) == 3:
            raise Deadline

    with pytest.raises(Deadline):
        _run(gen_split, backends, tmp_path / "resumed", before_work=deadline_after_two_batches)
    part = tmp_path / "resumed" / clean.name
    assert not (part / "done.json").exists() and len(list((part / "original").glob("*.png"))) == 4
    resumed = _run(gen_split, backends, tmp_path / "resumed", before_work=lambda: asked.append(2))
    assert read_json(resumed / "done.json")["n_computed"] == 1 and asked.count(2) == 1  # only the last batch
    assert _snapshot(resumed) == _snapshot(clean)
    _run(gen_split, backends, tmp_path / "resumed", before_work=lambda: pytest.fail("a finished split has no work"))


def test_repeatable_bytes(gen_split: Path, backends, tmp_path: Path) -> None:  # noqa: ANN001
    a = _run(gen_split, backends, tmp_path / "a")
    b = _run(gen_split, backends, tmp_path / "b")
    assert _snapshot(a) == _snapshot(b)


def test_bad_inputs(gen_split: Path, backends, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="label_source"):
        _run(gen_split, backends, tmp_path, label_source="gt")
    with pytest.raises(ValueError, match="'image'"):
        _run([{"name": "x"}], backends, tmp_path)
    with pytest.raises(ValueError, match="no semantic map"):
        _run(TinyAnomalyDataset(n=1, size=SIZE), backends, tmp_path, label_source="ground_truth")
    broken = make_generated_split(tmp_path / "broken", n=2, size=SIZE)
    next((broken / "semantic").glob("*.png")).unlink()
    with pytest.raises(ReprolibDataError, match="semantic"):
        GeneratedSplitSource(broken)
    with pytest.raises(ReprolibDataError, match="original"):
        GeneratedSplitSource(tmp_path / "nowhere")
    # bad values are reported with the file they are in, before anything is computed or cached
    for folder, value, what in (("semantic", 19, "trainIds 0..18 or 255"), ("semantic_labelId", 200, "labelIds 0..33"),
                                ("labels", 7, "masks of 0, 1 or 255")):
        bad = make_generated_split(tmp_path / f"bad-{folder}", n=2, size=SIZE)
        path = sorted((bad / folder).glob("*.png"))[1]
        write_png(path, np.full(SIZE, value, np.uint8))
        src = GeneratedSplitSource(bad)
        src[0]
        with pytest.raises(ReprolibDataError, match=f"{path.name}: expected .*{what}, found \\[{value}\\]"):
            src[1]


class RecordingSegmentation(nn.Module):
    """Wraps a segmentation backend, recording (and asserting) the input size it is given."""

    name = "recording"

    def __init__(self, net: nn.Module, expect: tuple[int, int]):
        super().__init__()
        self.net, self.expect, self.seen = net, expect, []

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(image.shape[-2:]))
        assert tuple(image.shape[-2:]) == self.expect, f"segmented at {tuple(image.shape[-2:])}, not {self.expect}"
        return self.net(image)


NATIVE = (128, 256)  # the "dataset's own resolution" of these tests (Cityscapes: 1024×2048), processed at SIZE


def test_segmentation_runs_at_the_dataset_resolution(backends, tmp_path: Path) -> None:  # noqa: ANN001
    """Spec §2.1 / §5.3: segment at the source's size; H, D and the argmax are nearest-resized to SIZE."""
    from reprolib.maps import quantize_8bit, softmax_distance, softmax_entropy

    seg = RecordingSegmentation(backends[0], NATIVE).eval()
    ds = TinyAnomalyDataset(n=3, size=NATIVE, seed=4)
    out = precompute(ds, seg, backends[1], tmp_path, size=SIZE, batch_size=2, perceptual=MeanAbsDiff(), progress=False)
    assert seg.seen == [NATIVE, NATIVE]  # two batches, both at the native size
    item = ds[2]
    with torch.no_grad():
        logits = backends[0](imagenet_normalize(((item["image"] * 255).round() / 255)[None]))
    assert tuple(logits.shape[-2:]) == NATIVE
    expected = {  # nearest on PIL's grid: a 2× shrink keeps the second pixel of each 2×2 cell (spec §4.3)
        "semantic": logits.argmax(1)[0, 1::2, 1::2].numpy().astype(np.uint8),
        "entropy": quantize_8bit(softmax_entropy(logits, norm="original"), mode="round")[0, 0, 1::2, 1::2],
        "logit_distance": quantize_8bit(softmax_distance(logits, norm="original"), mode="round")[0, 0, 1::2, 1::2],
    }
    for d, want in expected.items():
        got = read_png(out / d / f"{item['name']}.png")
        assert got.shape == SIZE
        assert np.array_equal(got, np.asarray(want).astype(np.uint8)), d
    # labels at SIZE (nearest) and at the native size; resynthesis and V at SIZE
    label = item["label"].numpy().astype(np.uint8)
    pil = np.array(Image.fromarray(label).resize(SIZE[::-1], Image.Resampling.NEAREST))
    assert np.array_equal(pil, label[1::2, 1::2]) and np.array_equal(read_png(out / "labels" / f"{item['name']}.png"), pil)
    assert read_png(out / "labels_native" / f"{item['name']}.png").shape == NATIVE
    assert read_png(out / "synthesis" / f"{item['name']}.png").shape[:2] == SIZE
    assert read_png(out / "mae_features" / f"{item['name']}.png").shape == SIZE
    assert read_json(out / "key.json")["version"] == pc.CACHE_VERSION >= 3


def test_default_image_resize_is_nearest(backends, tmp_path: Path) -> None:  # noqa: ANN001
    """Spec §4.3: the original nearest-resizes the RGB image too; antialiased bilinear is an option and
    a separate cache."""
    ds = TinyAnomalyDataset(n=2, size=NATIVE, seed=5)
    near = _run(ds, backends, tmp_path)
    lin = _run(ds, backends, tmp_path, image_resize="bilinear")
    assert near != lin  # the mode is part of the cache key
    assert read_json(near / "key.json")["params"]["image_resize"] == "nearest"
    name = ds[0]["name"]
    rgb8 = (ds[0]["image"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = np.array(Image.fromarray(rgb8).resize(SIZE[::-1], Image.Resampling.NEAREST))
    assert np.array_equal(read_png(near / "original" / f"{name}.png"), pil)
    assert not np.array_equal(read_png(lin / "original" / f"{name}.png"), pil)


def test_processing_size_sources_are_unchanged_by_the_resize_mode(backends, tmp_path: Path) -> None:  # noqa: ANN001
    """A source already at the processing size (the embedded world) gives the same bytes either way."""
    ds = TinyAnomalyDataset(n=2, size=SIZE, seed=6)
    seg = RecordingSegmentation(backends[0], SIZE).eval()
    a = precompute(ds, seg, backends[1], tmp_path, size=SIZE, batch_size=2, perceptual=MeanAbsDiff(), progress=False)
    b = _run(ds, backends, tmp_path, image_resize="bilinear")
    assert _snapshot(a) == _snapshot(b)


class StyleRecording(nn.Module):
    """A resynthesis that records the real image it is given and paints every pixel 100.7 / 255."""

    name = "style-recording"

    def __init__(self, style_size: tuple[int, int] | None):
        super().__init__()
        self.style_size, self.seen = style_size, []

    def forward(self, label_ids: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        self.seen.append(image.clone())
        return torch.full((label_ids.shape[0], 3, *label_ids.shape[-2:]), 100.7 / 255)


@pytest.mark.parametrize("style_size", [None, (32, 64)])
def test_resynthesis_style_image_and_8_bit_synthesis(backends, tmp_path: Path, style_size) -> None:  # noqa: ANN001
    """CC-FPSE's encoder takes PIL's bicubic 256×512 of the native uint8 image (spec §5.3 step 4), bit for bit,
    not the nearest-resized processed image; the stored resynthesis is truncated to 8 bits, as the original's
    ``((g + 1) / 2 * 255).astype(np.uint8)``."""
    ds = TinyAnomalyDataset(n=2, size=NATIVE, seed=7)
    resyn = StyleRecording(style_size)
    out = precompute(ds, backends[0], resyn, tmp_path, size=SIZE, batch_size=2, perceptual=MeanAbsDiff(),
                     progress=False)
    (seen,) = resyn.seen
    rgb8 = [(ds[i]["image"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy() for i in range(2)]
    if style_size is None:  # the processed images, as stored in original/
        want = [read_png(out / "original" / f"{ds[i]['name']}.png") for i in range(2)]
        assert all(np.array_equal((seen[i] * 255).round().byte().permute(1, 2, 0).numpy(), want[i]) for i in range(2))
    else:  # exactly what the original's loader gives: PIL's bicubic of the uint8 native image, then ToTensor
        assert tuple(seen.shape[-2:]) == style_size and seen.dtype == torch.float32
        for i in range(2):
            pil = np.array(Image.fromarray(rgb8[i]).resize(style_size[::-1], Image.BICUBIC))
            want = torch.from_numpy(pil).permute(2, 0, 1).float() / 255  # torchvision's ToTensor
            assert torch.equal(seen[i], want), (seen[i] * 255 - want * 255).abs().max()
    synthesis = read_png(out / "synthesis" / f"{ds[0]['name']}.png")
    assert synthesis.shape == (*SIZE, 3) and (synthesis == 100).all()  # 100.7 truncated, not rounded to 101
    # a split whose style image came from torch's bicubic is not reused; one without a style image keeps its key
    params = read_json(out / "key.json")["params"]
    assert params.get("style_resize") == (None if style_size is None else "pil_bicubic")


def test_settings_outside_the_state_dict_are_in_the_cache_key(backends) -> None:  # noqa: ANN001
    """V's layer weights (the report's VGG16 variant uses others), CC-FPSE's noise seed and ICNet's BGR mean change
    the output without a weight changing: each must change the cache key, or a stale split is reused."""
    from reprolib.backends import module_fingerprint
    from reprolib.maps import PerceptualDifference

    v = [module_fingerprint(PerceptualDifference(weights=w, pretrained=False)) for w in ((1, 1, 1, 1, 1), (1, 1, 1, 1, 2))]
    assert v[0] != v[1]
    gen = backends[1]
    base = module_fingerprint(gen)
    gen.output_settings, gen.seed = ("seed",), 0
    with_seed = module_fingerprint(gen)
    gen.seed = 1
    assert len({base, with_seed, module_fingerprint(gen)}) == 3
    gen.fingerprint = "checkpoint-sha"  # a given fingerprint (a checkpoint file's hash) keeps the settings too
    given = module_fingerprint(gen)
    gen.seed = 0
    assert given != "checkpoint-sha" and module_fingerprint(gen) != given
    del gen.output_settings, gen.seed, gen.fingerprint
    assert module_fingerprint(gen) == base
    # the published backends name theirs
    from reprolib.backends.ccfpse import CCFPSEResynthesis
    from reprolib.backends.icnet import ICNetSegmentation
    assert CCFPSEResynthesis.output_settings == ("seed",) and ICNetSegmentation.output_settings == ("bgr_mean",)
