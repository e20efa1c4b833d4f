"""Embedded backends, their Lightning training, and the backend registry."""

from __future__ import annotations

import itertools
import sys
import types
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from reprolib.backends import (
    COMBOS,
    ORIGINAL_STATE_DICT_NAMES,
    RESYNTHESIS_NAMES,
    SEGMENTATION_NAMES,
    EmbeddedGenerator,
    EmbeddedSegmentation,
    ResynthesisBackend,
    SegmentationBackend,
    build_generator,
    build_segmentation,
    from_original_state_dict,
    get_combo,
    get_resynthesis,
    get_segmentation,
    load_embedded_resynthesis,
    load_embedded_segmentation,
    module_fingerprint,
    save_embedded,
)
from reprolib.backends.embedded import label_edges, label_input
from reprolib.backends.registry import CHECKPOINT_ENV
from reprolib.io import ReprolibDataError, read_json, read_png, write_bytes
from reprolib.training.embedded_backends import (
    cityscapes_root_of,
    load_split_tensors,
    segmentation_scores,
    train_embedded_backends,
)
from reprolib.training.embedded_backends.tasks import ResumableShuffle

sys.path.insert(0, str(Path(__file__).parent))
from _make_backends import make_cityscapes_tree, make_fs_static  # noqa: E402

SIZE = (64, 128)


# ------------------------------------------------------------------------------------------ networks
@pytest.mark.parametrize("strength", ["strong", "light"])
def test_segmentation_shapes(strength: str) -> None:
    net = build_segmentation(strength).eval()
    assert isinstance(net, SegmentationBackend) and net.name == f"embedded-{strength}"
    with torch.no_grad():
        out = net(torch.randn(2, 3, *SIZE))
        odd = net(torch.randn(1, 3, 50, 70))  # sizes not divisible by 8 still come back at input size
    assert out.shape == (2, 19, *SIZE) and odd.shape == (1, 19, 50, 70)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        net(torch.randn(3, *SIZE))


@pytest.mark.parametrize("strength", ["strong", "light"])
def test_generator_shapes_and_range(strength: str) -> None:
    gen = build_generator(strength).eval()
    assert isinstance(gen, ResynthesisBackend)
    ids = torch.randint(0, 34, (2, *SIZE))
    ids[0, :4] = 255  # out-of-table ids are treated as 'unlabeled', not an error
    with torch.no_grad():
        out = gen(ids, image=torch.rand(2, 3, *SIZE))
    assert out.shape == (2, 3, *SIZE)
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="integer"):
        gen(ids.float())


def test_strong_is_bigger_than_light() -> None:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(build_segmentation("strong")) > 5 * count(build_segmentation("light"))
    assert count(build_generator("strong")) > 5 * count(build_generator("light"))
    with pytest.raises(ValueError, match="strength"):
        build_segmentation("medium")


def test_label_edges_and_input() -> None:
    ids = torch.zeros(1, 4, 6, dtype=torch.long)
    ids[0, :, 3:] = 7
    edges = label_edges(ids)[0, 0]
    assert edges[:, 2:4].eq(1).all() and edges[:, :2].eq(0).all() and edges[:, 4:].eq(0).all()
    x = label_input(ids)
    assert x.shape == (1, 36, 4, 6)
    assert x[0, :35].sum(0).eq(1).all()  # exactly one class per pixel
    assert x[0, 7, 0, 5] == 1 and x[0, 0, 0, 0] == 1


def test_save_load_roundtrip(tmp_path: Path) -> None:
    seg, gen = build_segmentation("light").eval(), build_generator("light").eval()
    save_embedded(seg, tmp_path / "seg.pt")
    save_embedded(gen, tmp_path / "gen.pt")
    seg2, gen2 = load_embedded_segmentation(tmp_path / "seg.pt"), load_embedded_resynthesis(tmp_path / "gen.pt")
    x, ids = torch.randn(1, 3, *SIZE), torch.randint(0, 34, (1, *SIZE))
    with torch.no_grad():
        assert torch.equal(seg(x), seg2(x)) and torch.equal(gen(ids), gen2(ids))
    other = build_segmentation("light", seed=1)
    assert module_fingerprint(seg) == module_fingerprint(seg2) != module_fingerprint(other)
    with pytest.raises(ReprolibDataError, match="expected segmentation"):
        load_embedded_segmentation(tmp_path / "gen.pt")
    write_bytes(tmp_path / "junk.pt", b"not a checkpoint")
    with pytest.raises(ReprolibDataError, match="junk.pt"):
        load_embedded_resynthesis(tmp_path / "junk.pt")
    assert not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------------------------------ registry
def test_registry_names_and_combos() -> None:
    assert COMBOS["original"] == ("deepwv3plus", "ccfpse")
    assert COMBOS["light"] == ("icnet", "spade")
    assert COMBOS["moderate1"] == ("deepwv3plus", "spade")
    assert COMBOS["moderate2"] == ("icnet", "ccfpse")
    assert COMBOS["embedded"] == ("embedded-strong", "embedded-strong")
    assert COMBOS["embedded-light"] == ("embedded-light", "embedded-light")
    assert COMBOS["embedded-moderate1"] == ("embedded-strong", "embedded-light")
    assert COMBOS["embedded-moderate2"] == ("embedded-light", "embedded-strong")
    for seg_name, resyn_name in COMBOS.values():
        assert seg_name in SEGMENTATION_NAMES and resyn_name in RESYNTHESIS_NAMES
    seg, gen = get_combo("embedded-moderate2", untrained=True)
    assert isinstance(seg, EmbeddedSegmentation) and seg.config.width == 8
    assert isinstance(gen, EmbeddedGenerator) and gen.config.width == 32
    assert not seg.training and not gen.training


def test_registry_unknown_names() -> None:
    with pytest.raises(ValueError, match="deepwv3plus, icnet"):
        get_segmentation("sdcnet")
    with pytest.raises(ValueError, match="ccfpse, spade"):
        get_resynthesis("pix2pixhd")
    with pytest.raises(ValueError, match="moderate1"):
        get_combo("heavy")
    with pytest.raises(ValueError, match="ccfpse-generator"):
        from_original_state_dict({}, "ccfpse")


def test_real_backends_need_checkpoints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in CHECKPOINT_ENV.values():
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="REPROLIB_CKPT_DEEPWV3PLUS"):
        get_segmentation("deepwv3plus")
    with pytest.raises(ValueError, match="'spade-generator'"):
        get_resynthesis("spade")
    monkeypatch.setenv("REPROLIB_CKPT_ICNET", str(tmp_path / "missing.pth"))
    with pytest.raises(ReprolibDataError, match="missing.pth"):
        get_segmentation("icnet")
    with pytest.raises(ValueError, match="embedded_dir"):
        get_segmentation("embedded-strong")


def test_from_original_state_dict_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    for mod, takes_name in (("deepwv3plus", False), ("icnet", False), ("ccfpse", True), ("spade", True)):
        fake = types.ModuleType(f"reprolib.backends.{mod}")
        if takes_name:
            fake.from_original_state_dict = lambda sd, name, _m=mod: calls.append((_m, name, sd)) or _m
        else:
            fake.from_original_state_dict = lambda sd, _m=mod: calls.append((_m, None, sd)) or _m
        monkeypatch.setitem(sys.modules, f"reprolib.backends.{mod}", fake)
    sd = {"w": torch.zeros(1)}
    got = {name: from_original_state_dict(sd, name) for name in ORIGINAL_STATE_DICT_NAMES}
    assert got == {"deepwv3plus": "deepwv3plus", "icnet": "icnet", "ccfpse-generator": "ccfpse",
                   "ccfpse-encoder": "ccfpse", "spade-generator": "spade"}
    assert [(m, n) for m, n, _ in calls] == [("deepwv3plus", None), ("icnet", None), ("ccfpse", "ccfpse-generator"),
                                             ("ccfpse", "ccfpse-encoder"), ("spade", "spade-generator")]
    assert all(s is sd for _, _, s in calls)


def test_real_converters_exist_where_landed() -> None:
    import importlib.util

    for mod in ("deepwv3plus", "icnet", "ccfpse", "spade"):
        if importlib.util.find_spec(f"reprolib.backends.{mod}") is not None:
            module = importlib.import_module(f"reprolib.backends.{mod}")
            assert callable(module.from_original_state_dict)


# ------------------------------------------------------------------------------------------ training
class _Crash(L.Callback):
    """Kill a fit after ``k`` steps, as a Ctrl-C / pre-emption would."""

    def __init__(self, k: int):
        self.k = k

    def on_train_batch_end(self, trainer, *args) -> None:  # noqa: ANN001
        if trainer.global_step >= self.k:
            raise RuntimeError("simulated kill")


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = tmp_path_factory.mktemp("world")
    make_cityscapes_tree(world / "cityscapes", n_train=8, n_val=4, size=SIZE, seed=1)
    return make_fs_static(world, n=3)


def test_training_learns_resumes_and_is_reused(tiny_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    kw = dict(strength="light", seed=0, max_steps=40, image_size=SIZE, progress=False)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_embedded_backends(tiny_tree, out, callbacks=lambda kind: [_Crash(25)], **kw)
    last = out / "light" / "lightning" / "segmentation" / "last.ckpt"
    assert last.is_file() and not (out / "light" / "done.json").exists()
    assert torch.load(last, weights_only=True)["global_step"] == 20  # checkpoints every 10 steps
    # its checkpoints would resume under other settings, and done.json then stamp them on the networks
    with pytest.raises(ValueError, match=r"holds an unfinished run with another config"):
        train_embedded_backends(tiny_tree, out, **{**kw, "max_steps": 30})

    paths = train_embedded_backends(tiny_tree, out, **kw)  # resumes from step 20
    metrics = read_json(paths["metrics"])
    seg_loss = metrics["loss"]["segmentation"]
    assert seg_loss["n"] == 40  # 20 restored from the checkpoint + 20 after the resume
    assert seg_loss["last"] < 0.75 * seg_loss["first"]
    gen_loss = metrics["loss"]["resynthesis"]
    assert gen_loss["last"] < 0.8 * gen_loss["first"]

    # learnt: far above an untrained net and above chance on the training images
    images, _, train_ids, _ = load_split_tensors(cityscapes_root_of(tiny_tree), "train", SIZE)
    trained = segmentation_scores(load_embedded_segmentation(paths["segmentation"]), images, train_ids)
    untrained = segmentation_scores(build_segmentation("light", seed=5).eval(), images, train_ids)
    assert trained["miou"] > 0.25 and trained["miou"] > untrained["miou"] + 0.1
    assert trained["pixel_accuracy"] > 0.6
    assert metrics["resynthesis"]["psnr"] > 12
    # the pasted FS Static objects are not a class it knows: it is less sure there than on known pixels
    fs = metrics["fs_static"]
    assert fs["n_images"] == 3 and fs["entropy_anomaly"] > fs["entropy_known"] and fs["entropy_auroc"] > 0.5

    preview = read_png(paths["preview"], mode="RGB")
    assert preview.shape == (4 * SIZE[0], 4 * SIZE[1], 3) and preview.std() > 10

    # a finished run is recognised: nothing is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = train_embedded_backends(tiny_tree, out, **kw)
    assert again == paths
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="another config"):
        train_embedded_backends(tiny_tree, out, **{**kw, "seed": 1})

    # the registry finds the run
    seg, gen = get_combo("embedded-light", embedded_dir=out)
    assert module_fingerprint(seg) == module_fingerprint(load_embedded_segmentation(paths["segmentation"]))
    with torch.no_grad():
        assert gen(torch.full((1, *SIZE), 7)).shape == (1, 3, *SIZE)


def test_training_is_deterministic(tiny_tree: Path, tmp_path: Path) -> None:
    kw = dict(strength="light", seed=3, max_steps=(6, 2), image_size=SIZE, progress=False)
    a = train_embedded_backends(tiny_tree, tmp_path / "a", **kw)
    b = train_embedded_backends(tiny_tree, tmp_path / "b", **kw)
    sa = torch.load(a["segmentation"], weights_only=True)["state_dict"]
    sb = torch.load(b["segmentation"], weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert np.array_equal(read_png(a["preview"]), read_png(b["preview"]))


@pytest.mark.parametrize("n", [20, 16])
def test_resumable_shuffle_draws_the_order_of_torch_shuffle(n: int) -> None:
    data = TensorDataset(torch.arange(n))
    ref = DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3))
    ours = DataLoader(data, batch_size=8, sampler=ResumableShuffle(n, torch.Generator().manual_seed(3)),
                      generator=torch.Generator().manual_seed(3))
    for epoch in range(6):
        # as Lightning reads a sized loader (len() batches, never asking past the last), or to exhaustion
        read = list if epoch % 3 == 2 else (lambda loader: list(itertools.islice(iter(loader), len(loader))))
        a, b = read(ref), read(ours)
        assert len(a) == len(b) and all(torch.equal(x[0], y[0]) for x, y in zip(a, b, strict=True)), epoch


@pytest.fixture(scope="module")
def uneven_trees(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Worlds of 20 and 16 training images: in batches of 8, epochs end on a partial batch or exactly."""
    trees = {}
    for n in (20, 16):
        world = tmp_path_factory.mktemp(f"world{n}")
        make_cityscapes_tree(world / "cityscapes", n_train=n, n_val=2, size=SIZE, seed=1)
        trees[n] = make_fs_static(world, n=2)
    return trees


# (training images, steps, kill after): checkpoints every steps // 4 steps, so the resume starts mid-epoch
# (20 @ 8: 3 batches an epoch; 16 @ 3: 2 an epoch) or at an epoch's end (20 @ 12, 16 @ 6)
@pytest.mark.parametrize("n, steps, kill", [(20, 16, 9), (20, 16, 13), (16, 12, 4), (16, 12, 7)],
                         ids=["partial-mid-epoch", "partial-epoch-end", "exact-mid-epoch", "exact-epoch-end"])
def test_killed_training_resumes_to_the_uninterrupted_weights(uneven_trees: dict[int, Path], tmp_path: Path,
                                                              n: int, steps: int, kill: int) -> None:
    kw = dict(strength="light", seed=0, max_steps=(steps, 1), image_size=SIZE, progress=False, batch_size=8)
    straight = train_embedded_backends(uneven_trees[n], tmp_path / "straight", **kw)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_embedded_backends(uneven_trees[n], tmp_path / "killed",
                                callbacks=lambda kind: [_Crash(kill)] if kind == "segmentation" else [], **kw)
    last = tmp_path / "killed" / "light" / "lightning" / "segmentation" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == kill - kill % (steps // 4)
    resumed = train_embedded_backends(uneven_trees[n], tmp_path / "killed", **kw)
    sa = torch.load(straight["segmentation"], weights_only=True)["state_dict"]
    sb = torch.load(resumed["segmentation"], weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_bad_root(tmp_path: Path) -> None:
    with pytest.raises(ReprolibDataError, match="leftImg8bit"):
        train_embedded_backends(tmp_path, tmp_path / "out", strength="light", max_steps=1, progress=False)
    with pytest.raises(ValueError, match="strength"):
        train_embedded_backends(tmp_path, tmp_path / "out", strength="huge")


def test_confusion_matrix_counts_like_torchmetrics_and_skips_ignored() -> None:
    from torchmetrics.classification import MulticlassConfusionMatrix

    from reprolib.training.embedded_backends.scores import confusion_matrix

    g = torch.Generator().manual_seed(3)
    pred = torch.randint(0, 19, (2, 16, 32), generator=g)
    target = torch.randint(0, 19, (2, 16, 32), generator=g)
    target[:, :4] = 255
    want = MulticlassConfusionMatrix(num_classes=19, ignore_index=255)(pred, target)
    got = confusion_matrix(pred, target)
    assert torch.equal(got, want)
    assert int(got.sum()) == int((target != 255).sum()) == 2 * 12 * 32
    assert int(got[target[0, 5, 7], pred[0, 5, 7]]) >= 1  # rows = target, columns = prediction



class _Killed(BaseException):
    """Stands for a SIGKILL at that point: nothing of train_embedded_backends runs after it."""


@pytest.fixture(scope="module")
def light_backends(tiny_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_embedded_backends(tiny_tree, tmp_path_factory.mktemp("ref"), strength="light", seed=0,
                                   max_steps=(4, 2), image_size=SIZE, progress=False)


@pytest.mark.parametrize("where", ["between_networks", "evaluation"])
def test_table_run_finishes_backends_killed_after_their_checkpoints(
    tiny_tree: Path, light_backends: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    """A table run that finds the embedded backends' checkpoints but no done.json finishes the run as an
    uninterrupted one would: metrics.json (with both networks' loss histories), preview.png, done.json. It used
    to take the checkpoints for a finished run and never wrote those three, and a rerun that trained only the
    second network reported only that network's loss."""
    import reprolib.training.embedded_backends.train as T
    from reprolib.experiments import pipeline as P
    from reprolib.experiments.profiles import PipelineProfile, get_pipeline_profile

    kw = dict(max_steps=(4, 2), image_size=SIZE)
    with monkeypatch.context() as m:
        if where == "between_networks":  # right after the segmentation network's checkpoint
            def save_then_die(model, path):  # noqa: ANN001, ANN202
                save_embedded(model, path)
                raise _Killed
            m.setattr(T, "save_embedded", save_then_die)
        else:  # both checkpoints written, in the evaluation
            m.setattr(T, "segmentation_scores", lambda *a, **k: (_ for _ in ()).throw(_Killed()))
        with pytest.raises(_Killed):
            train_embedded_backends(tiny_tree, tmp_path / "backends", strength="light", seed=0, progress=False, **kw)
    run = tmp_path / "backends" / "light"
    assert (run / "segmentation.pt").is_file() and not (run / "done.json").exists()

    tiny = get_pipeline_profile("tiny")
    ctx = P.Context(profile=PipelineProfile(**{**tiny.__dict__, "backend_training": kw}), work_dir=tmp_path,
                    data=P.DataRoots(tiny_tree, embedded=True))
    P._train_embedded(ctx, "embedded-light")  # what a rerun of the table does first
    assert (run / "done.json").is_file()
    for key in ("segmentation", "resynthesis", "preview"):
        assert (run / light_backends[key].name).read_bytes() == light_backends[key].read_bytes()
    metrics, expected = read_json(run / "metrics.json"), read_json(light_backends["metrics"])
    metrics.pop("train_seconds"), expected.pop("train_seconds")
    assert metrics == expected and set(metrics["loss"]) == {"segmentation", "resynthesis"}
