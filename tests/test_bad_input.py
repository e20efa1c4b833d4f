"""Bad input stops at the front door (issue 19): one table of hostile-but-realistic inputs over every entry
point — ``python -m reprolib.world``, ``python -m reprolib.data.generator``, ``python -m reprolib evaluate``,
the data readers and the checkpoint loaders. Each case asserts the exit code (2 usage, 1 data), the one
``error: <culprit>: <problem>`` line, and that nothing under the test's folder was written or changed.
CLI cases run as subprocesses; the machinery and the record shape are in ``tests/_bad_input.py``.

Also here: the other front-door fixes of the issue — numba's cache fallback and the results' commit id.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _bad_input import ROOT, Case, check_outcome, run_api_case, run_cli_cases  # noqa: E402
from _make_data import make_cityscapes, make_fishyscapes, npz_bytes  # noqa: E402
from _make_processed import make_processed_split  # noqa: E402
from _make_real_backends import layout, zeros_state_dict  # noqa: E402

from reprolib import backends, models  # noqa: E402
from reprolib.data import formats as F  # noqa: E402
from reprolib.data.cityscapes import CityscapesDataset  # noqa: E402
from reprolib.data.fishyscapes import LostAndFoundDataset, StaticDataset  # noqa: E402
from reprolib.data.processed import ProcessedSplit  # noqa: E402
from reprolib.experiments.results import git_commit  # noqa: E402
from reprolib.io import load_torch, png_bytes, read_png, save_torch, write_bytes, write_json, write_png  # noqa: E402
from reprolib.metrics import anomaly_metrics  # noqa: E402
from reprolib.training.run import train  # noqa: E402

PROCESSED = (32, 64)


# --------------------------------------------------------------------------------------------------------
# shared fixtures (built once; cases must leave them untouched — the snapshot checks it)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad_input")


@pytest.fixture(scope="module")
def env(root: Path) -> dict[str, Path]:
    shared = root / "shared"
    split = make_processed_split(shared / "split", 2, size=PROCESSED)
    cfg = {"train_split": str(split), "val_split": None, "label_dir": "labels", "size": list(PROCESSED),
           "max_steps": 1, "batch_size": 2, "model": {"width": 0.0625, "pretrained": False},
           "wandb_mode": "disabled", "seed": 0}
    run = train(cfg, shared / "run")
    fishy = make_fishyscapes(shared / "world", n=2)
    make_cityscapes(shared / "cs", n=2)
    (shared / "a_file").write_text("not a folder\n")
    return {"run": run, "ckpt": run / "checkpoints" / "last.ckpt", "split": split, "world": fishy.world,
            "laf": fishy.fs_laf, "static": fishy.fs_static, "cs": shared / "cs", "file": shared / "a_file"}


# --------------------------------------------------------------------------------------------------------
# builders of bad inputs


def bomb_png(path: Path, height: int = 20000, width: int = 20000) -> Path:
    """A valid 1×1 PNG whose header claims ``height`` × ``width`` (PIL refuses it as a decompression bomb)."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    write_bytes(path, bytes(data))
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def renamed_split(case: Path, env) -> None:
    split = copy_tree(env["split"], case / "split")
    victim = sorted((split / "entropy").glob("*.png"))[1]
    victim.rename(victim.with_name("city_000001_000091.png"))  # same sort position, other name


def bomb_split(case: Path, env) -> None:
    split = copy_tree(env["split"], case / "split")
    bomb_png(sorted((split / "original").glob("*.png"))[0])


def bad_label_split(case: Path, env) -> None:
    split = copy_tree(env["split"], case / "split")
    path = sorted((split / "labels").glob("*.png"))[1]
    label = read_png(path)
    label[5, 5] = 7
    write_png(path, label)


def run_without_config(case: Path, env) -> None:
    shutil.copytree(env["run"] / "checkpoints", case / "run" / "checkpoints")


def foreign_ckpt(case: Path, env) -> None:
    ckpt = torch.load(env["ckpt"], map_location="cpu", weights_only=True)
    save_torch({"state_dict": {"backbone.fc.weight": torch.zeros(3, 3)}, "hyper_parameters": ckpt["hyper_parameters"]},
               case / "foreign.ckpt")


def missized_ckpt(case: Path, env) -> None:
    ckpt = torch.load(env["ckpt"], map_location="cpu", weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.ndim == 4)
    ckpt["state_dict"][key] = torch.zeros(1, 1, 1, 1)
    save_torch(ckpt, case / "wide.ckpt")


def bare_state_dict(case: Path, env) -> None:
    save_torch({"w": torch.zeros(2)}, case / "bare.ckpt")


def truncated_ckpt(case: Path, env) -> None:
    (case / "cut.ckpt").write_bytes(env["ckpt"].read_bytes()[:1000])


def cityscapes_with(problem: str):
    def setup(case: Path, env) -> None:
        cs = copy_tree(env["cs"], case / "cs")
        fid = F.FrameId("testcity", 0, 19)
        if problem == "label_id":
            path = F.cityscapes_gt_path(cs, "train", fid, "labelIds")
            lab = read_png(path)
            lab[0, 5] = 40
            write_png(path, lab)
        elif problem == "truncated":
            path = F.cityscapes_image_path(cs, "train", fid)
            path.write_bytes(path.read_bytes()[:100])
        elif problem == "bomb":
            bomb_png(F.cityscapes_image_path(cs, "train", fid))
        elif problem == "small_image":
            write_png(F.cityscapes_image_path(cs, "train", fid), np.zeros((10, 12, 3), np.uint8))
        elif problem == "no_label":
            F.cityscapes_gt_path(cs, "train", fid, "instanceIds").unlink()
        elif problem == "other_params":
            write_json(case / "gen" / "generator.json", {"version": 1, "split": "train", "fraction": None, "seed": 5,
                                                         "void": False, "dynamic": False, "fill_void": None})
    return setup


def static_with(value: float):
    def setup(case: Path, env) -> None:
        static = copy_tree(env["static"], case / "Static")
        overlay = np.zeros((64, 128, 3), np.float32)
        overlay[3, 4, 1] = value
        write_bytes(sorted(static.glob("*_rgb.npz"))[0], npz_bytes(rgb=overlay))
    return setup


def read_static(case: Path, env) -> None:
    ds = StaticDataset(case / "Static", env["world"] / F.WORLD_CITYSCAPES)
    for i in range(len(ds)):
        ds[i]


def laf_with_broken_image(case: Path, env) -> None:
    world = case / "world"
    shutil.copytree(env["world"] / F.WORLD_LOSTANDFOUND, world / F.WORLD_LOSTANDFOUND)
    shutil.copytree(env["laf"], world / F.WORLD_FS_LAF)
    image = sorted((world / F.WORLD_LOSTANDFOUND).rglob("*_leftImg8bit.png"))[0]
    image.write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def read_laf(case: Path, env) -> None:
    ds = LostAndFoundDataset(case / "world" / F.WORLD_FS_LAF)
    for i in range(len(ds)):
        ds[i]


def small_original_split(case: Path, env) -> None:
    split = copy_tree(env["split"], case / "split")
    write_png(sorted((split / "original").glob("*.png"))[0], np.zeros((10, 12, 3), np.uint8))


def other_project_ckpt(case: Path, env) -> None:
    """Another project's Lightning checkpoint: its hyper_parameters name a model by string."""
    save_torch({"state_dict": {}, "hyper_parameters": {"model": "resnet50", "lr": 0.1}}, case / "other.ckpt")


def split_with_list_key(case: Path, env) -> None:
    split = copy_tree(env["split"], case / "split")
    (split / "key.json").write_text("[1]\n")


def embedded_with_list_state(case: Path, env) -> None:
    model = backends.build_segmentation("light", seed=0)
    backends.embedded.save_embedded(model, case / "seg.pt")
    ckpt = torch.load(case / "seg.pt", weights_only=True)
    save_torch({**ckpt, "state_dict": [1, 2]}, case / "seg.pt")


def icnet_sd(missized: bool) -> dict[str, torch.Tensor]:
    sd = zeros_state_dict(layout("icnet"))
    if missized:
        sd["backbone.head.bottleneck.0.weight"] = torch.zeros(512, 4096, 1, 1)
    return sd


# --------------------------------------------------------------------------------------------------------
# the table

W = ("reprolib.world", "--out", "{case}/w", "--size", "16x32", "--n-train", "1", "--n-laf", "1")
G = ("reprolib.data.generator", "--out", "{case}/gen", "--no-progress")
E = ("reprolib", "evaluate")
ES = (*E, "--run-dir", "{run}", "--split", "{split}", "--resolution", "processed", "--out", "{case}/out")
ED = (*E, "--run-dir", "{run}", "--dataset", "{laf}", "--size", "32", "64", "--work-dir", "{case}/work", "--out", "{case}/out")

CASES: list[Case | dict] = [
    # python -m reprolib.world: every value checked before anything is written
    Case("world-negative-train", 2, r"^error: --n-train: must be 0 or more, got -3$", argv=(*W, "--n-train", "-3")),
    Case("world-negative-val", 2, r"--n-val: must be 0 or more", argv=(*W, "--n-val", "-1")),
    Case("world-negative-laf", 2, r"--n-laf: must be 0 or more", argv=(*W, "--n-laf", "-5")),
    Case("world-negative-static", 2, r"--n-static: must be 0 or more", argv=(*W, "--n-static", "-1")),
    Case("world-all-zero", 2, r"--n-train: every image count is 0",
         argv=(*W, "--n-train", "0", "--n-val", "0", "--n-laf", "0")),
    Case("world-static-over-val", 2, r"--n-static: 3 cannot exceed n_val \(2\)", argv=(*W, "--n-val", "2", "--n-static", "3")),
    Case("world-zero-height", 2, r"--size: height and width must be positive, got '0x128'", argv=(*W, "--size", "0x128")),
    Case("world-zero-width", 2, r"--size: height and width must be positive", argv=(*W, "--size", "64x0")),
    Case("world-size-format", 2, r"--size: size must look like 256x512, got '64by128'", argv=(*W, "--size", "64by128")),
    Case("world-count-not-int", 2, r"--n-train: expected a whole number, got 'abc'", argv=(*W, "--n-train", "abc")),
    Case("world-negative-seed", 2, r"--seed: must be 0 or more", argv=(*W, "--seed", "-1")),
    Case("world-no-out", 2, r"--out: required", argv=("reprolib.world", "--n-val", "2")),
    Case("world-out-is-file", 2, r"--out: .*a_file is a file", argv=("reprolib.world", "--out", "{file}", "--size", "8x8")),
    Case("world-unknown-option", 2, r"--n-vals 2: unrecognized argument", argv=(*W, "--n-vals", "2")),
    # python -m reprolib.data.generator
    Case("gen-no-cityscapes", 1, r"nowhere: Cityscapes root folder not found", argv=(*G, "--cityscapes", "{case}/nowhere")),
    Case("gen-fraction-range", 2, r"--fraction: must be in \[0, 1\], got 1.5",
         argv=(*G, "--cityscapes", "{cs}", "--fraction", "1.5")),
    Case("gen-fraction-text", 2, r"--fraction: expected a number", argv=(*G, "--cityscapes", "{cs}", "--fraction", "half")),
    Case("gen-negative-seed", 2, r"--seed: must be 0 or more", argv=(*G, "--cityscapes", "{cs}", "--seed", "-2")),
    Case("gen-unknown-split", 1, r"leftImg8bit/nosuch: Cityscapes image folder for split 'nosuch' not found",
         argv=(*G, "--cityscapes", "{cs}", "--split", "nosuch")),
    Case("gen-out-is-file", 2, r"--out: .*a_file is a file",
         argv=("reprolib.data.generator", "--cityscapes", "{cs}", "--out", "{file}")),
    Case("gen-missing-label-file", 1, r"testcity_000000_000019_gtFine_instanceIds.png: label file missing",
         argv=(*G, "--cityscapes", "{case}/cs"), setup=cityscapes_with("no_label")),
    Case("gen-bad-label-id", 1, r"testcity_000000_000019_gtFine_labelIds.png: label ids outside the Cityscapes table",
         argv=(*G, "--cityscapes", "{case}/cs"), setup=cityscapes_with("label_id"),
         may_write=("gen", "gen/generator.json")),  # complete: false
    Case("gen-truncated-image", 1, r"testcity_000000_000019_leftImg8bit.png: unreadable or truncated image",
         argv=(*G, "--cityscapes", "{case}/cs"), setup=cityscapes_with("truncated"),
         may_write=("gen", "gen/generator.json")),
    Case("gen-bomb-image", 1, r"testcity_000000_000019_leftImg8bit.png: image too large to read safely",
         argv=(*G, "--cityscapes", "{case}/cs"), setup=cityscapes_with("bomb"),
         may_write=("gen", "gen/generator.json")),
    Case("gen-other-params", 1, r"generator.json: this folder was generated with other parameters \(.*seed: 5 → 0.*\)",
         argv=(*G, "--cityscapes", "{case}/cs"), setup=cityscapes_with("other_params")),
    # python -m reprolib evaluate: arguments, then the checkpoint, before any precompute, scoring or write
    Case("eval-unknown-combo", 2, r"--combo: unknown value 'orignal'; did you mean 'original'\?",
         argv=(*ED, "--combo", "orignal")),
    Case("eval-size-zero", 2, r"--size: must be at least 1, got 0",
         argv=(*E, "--dataset", "{laf}", "--combo", "light", "--size", "0", "0", "--run-dir", "{run}")),
    Case("eval-size-one-value", 2, r"--size: expected 2 arguments",
         argv=(*E, "--run-dir", "{run}", "--split", "{split}", "--size", "64")),
    Case("eval-out-is-file", 2, r"--out: .*a_file is a file; expected a folder",
         argv=(*E, "--run-dir", "{run}", "--split", "{split}", "--out", "{file}")),
    Case("eval-out-under-file", 2, r"--out: .*cannot be created: .*a_file is a file",
         argv=(*E, "--run-dir", "{run}", "--split", "{split}", "--out", "{file}/sub")),
    Case("eval-run-without-config", 1, r"run/config.json: not found: .*pass --size H W",
         argv=(*E, "--run-dir", "{case}/run", "--dataset", "{laf}", "--combo", "embedded-light"), setup=run_without_config),
    Case("eval-foreign-state-dict", 1, r"foreign.ckpt: checkpoint does not match the model config: \d+ missing / 0 mis-shaped",
         argv=(*ES[:2], "--checkpoint", "{case}/foreign.ckpt", *ES[4:]), setup=foreign_ckpt),
    Case("eval-missized-state-dict", 1, r"wide.ckpt: checkpoint does not match the model config: 0 missing / 1 mis-shaped keys "
                                        r"\(first: [\w.]+ \(1, 1, 1, 1\)",
         argv=(*ES[:2], "--checkpoint", "{case}/wide.ckpt", *ES[4:]), setup=missized_ckpt),
    Case("eval-bare-state-dict", 1, r"bare.ckpt: not a reprolib training checkpoint",
         argv=(*ES[:2], "--checkpoint", "{case}/bare.ckpt", *ES[4:]), setup=bare_state_dict),
    Case("eval-other-project-ckpt", 1, r"other.ckpt: its hyper_parameters do not describe a reprolib dissimilarity network",
         argv=(*ES[:2], "--checkpoint", "{case}/other.ckpt", *ES[4:]), setup=other_project_ckpt),
    Case("eval-key-json-not-an-object", 1, r"split/key.json: not a precompute key.json: no params.size",
         argv=(*ES[:4], "--split", "{case}/split", *ES[6:]), setup=split_with_list_key),
    Case("eval-truncated-ckpt", 1, r"cut.ckpt: not a readable checkpoint",
         argv=(*ES[:2], "--checkpoint", "{case}/cut.ckpt", *ES[4:]), setup=truncated_ckpt),
    Case("eval-missing-ckpt", 1, r"nothere.ckpt: not found", argv=(*ES[:2], "--checkpoint", "{case}/nothere.ckpt", *ES[4:])),
    Case("eval-untrained-run", 1, r"last.ckpt: checkpoint not found \(has the run been trained\?\)",
         argv=(*ES[:2], "--checkpoint", "{case}", *ES[4:])),
    Case("eval-renamed-split-file", 1, r"entropy/city_000001_000091.png: does not pair with original/city_000001_000019.png",
         argv=(*ES[:4], "--split", "{case}/split", *ES[6:]), setup=renamed_split),
    Case("eval-bomb-png", 1, r"city_000000_000019.png: image too large to read safely",
         argv=(*ES[:4], "--split", "{case}/split", *ES[6:]), setup=bomb_split),
    Case("eval-bad-label-value", 1, r"labels/city_000001_000019.png: labels must be 0, 1 or 255; found \[7\]",
         argv=(*ES[:4], "--split", "{case}/split", *ES[6:]), setup=bad_label_split),
    Case("eval-no-split", 1, r"nosplit: not a processed split", argv=(*ES[:4], "--split", "{case}/nosplit", *ES[6:])),
    Case("eval-no-native-labels", 1, r"labels_native.*recompute", argv=(*E, "--run-dir", "{run}", "--split", "{split}",
                                                                        "--out", "{case}/out")),
    Case("eval-bad-ckpt-arg", 2, r"--ckpt: expects NAME=PATH, got 'icnet'", argv=(*ED, "--combo", "light", "--ckpt", "icnet")),
    Case("eval-static-without-cityscapes", 2, r"--cityscapes-root: needed with --kind fs_static",
         argv=(*ED, "--kind", "fs_static")),
    Case("eval-unknown-kind", 2, r"--kind: invalid choice: 'fs_road'", argv=(*ED, "--kind", "fs_road")),
    Case("eval-ckpt-file-needs-size", 2, r"--size: needed with a .ckpt file",
         argv=(*E, "--checkpoint", "{ckpt}", "--dataset", "{laf}", "--combo", "light", "--out", "{case}/out")),
    Case("eval-missing-dataset", 1, r"nowhere: Fishyscapes folder not found",
         argv=(*E, "--dataset", "{case}/nowhere", "--size", "32", "64", "--run-dir", "{run}", "--out", "{case}/out")),
    Case("eval-real-combo-without-weights", 2, r"missing checkpoint 'icnet'",
         argv=(*ED, "--combo", "light")),
    Case("eval-no-checkpoint", 2, r"--checkpoint/--run-dir: required", argv=(*E, "--split", "{split}")),
    Case("cli-no-command", 2, r"cmd.*required|the following arguments", argv=("reprolib",)),
    # data readers and loaders, as the CLIs report them
    Case("api-processed-renamed", 1, r"entropy/city_000001_000091.png: does not pair", setup=renamed_split,
         call=lambda case, env: ProcessedSplit(case / "split", size=PROCESSED)),
    # a label whose size differs from its image: both files named, since either may be the wrong one
    Case("api-cityscapes-image-size", 1, r"testcity_000000_000019_gtFine_labelIds.png: size \d+x\d+ \(WxH\) does not match "
                                         r"its image .*testcity_000000_000019_leftImg8bit.png \(12x10\)",
         setup=cityscapes_with("small_image"),
         call=lambda case, env: CityscapesDataset(case / "cs").load_arrays(0)),
    Case("api-processed-original-size", 1, r"synthesis/city_000000_000019.png: size 64x32 \(WxH\) does not match its "
                                           r"image .*original/city_000000_000019.png \(12x10\)",
         setup=small_original_split, call=lambda case, env: ProcessedSplit(case / "split", size=PROCESSED)[0]),
    Case("api-static-nan", 1, r"0000_testcity_000000_000019_rgb.npz: overlay holds 1 NaN or infinite values",
         setup=static_with(float("nan")), call=read_static),
    Case("api-static-inf", 1, r"_rgb.npz: overlay holds 1 NaN or infinite values", setup=static_with(float("inf")),
         call=read_static),
    Case("api-png-bomb", 1, r"huge.png: image too large to read safely \(Image size \(400000000 pixels\)",
         setup=lambda case, env: bomb_png(case / "huge.png"), call=lambda case, env: read_png(case / "huge.png", mode="RGB")),
    Case("api-laf-unreadable", 1, r"_leftImg8bit.png: unreadable or truncated image", setup=laf_with_broken_image,
         call=read_laf),
    Case("api-original-int-keys", 2, r"^error: not an original 'main' dissimilarity checkpoint: checkpoint does not match the "
                                     r"model config: \d+ missing / 0 mis-shaped keys / 1 unexpected \(first: ",
         call=lambda case, env: models.from_original_state_dict({1: torch.zeros(3)})),
    Case("api-original-missing-file", 1, r"best_net.pth: checkpoint not found",
         call=lambda case, env: models.from_original_state_dict(case / "best_net.pth")),
    Case("api-backend-foreign", 2, r"not a deepwv3plus state dict: checkpoint does not match the model config: \d+ missing / "
                                   r"0 mis-shaped keys / 1 unexpected",
         call=lambda case, env: backends.from_original_state_dict({"fc.weight": torch.zeros(2, 2)}, "deepwv3plus")),
    Case("api-backend-missized", 2, r"icnet state dict: checkpoint does not match the model config: 0 missing / 1 mis-shaped "
                                    r"keys \(first: backbone.head.bottleneck.0.weight \(512, 4096, 1, 1\)",
         call=lambda case, env: backends.from_original_state_dict(icnet_sd(True), "icnet")),
    Case("api-backend-int-keys", 2, r"not a state dict: entries \[1\] are not name → tensor",
         call=lambda case, env: backends.from_original_state_dict({1: torch.zeros(2)}, "spade-generator")),
    Case("api-embedded-state-not-a-mapping", 1, r"seg.pt: its state_dict is a list, not a mapping",
         setup=embedded_with_list_state,
         call=lambda case, env: backends.embedded.load_embedded_segmentation(case / "seg.pt")),
    Case("api-pickled-objects", 1, r"obj.pt: cannot load checkpoint safely \(holds Python objects \(argparse.Namespace\) "
                                   r"that only an unsafe unpickling would load; .*re-save the tensors",
         setup=lambda case, env: torch.save({"args": argparse.Namespace(lr=1)}, case / "obj.pt"),
         call=lambda case, env: load_torch(case / "obj.pt")),
    Case("api-checkpoint-is-a-folder", 1, r"a_folder: is a folder; expected a checkpoint$",
         setup=lambda case, env: (case / "a_folder").mkdir(), call=lambda case, env: load_torch(case / "a_folder")),
    Case("api-metrics-nan", 2, r"NaN or infinite",
         call=lambda case, env: anomaly_metrics([np.array([[np.nan, 0.5]])], [np.array([[0, 1]], np.uint8)])),
]


@pytest.fixture(scope="module")
def cli_outcomes(root: Path, env: dict[str, Path]) -> dict:
    """Every CLI case of the table, each its own subprocess, run together once for the module."""
    cases = [c for c in map(Case.of, CASES) if c.argv is not None]
    return run_cli_cases(cases, root, env, shared=root / "shared")


@pytest.mark.parametrize("record", CASES, ids=lambda c: Case.of(c).id)
def test_bad_input(record, root: Path, env: dict[str, Path], cli_outcomes: dict) -> None:
    case = Case.of(record)
    outcome = cli_outcomes[case.id] if case.argv is not None else run_api_case(case, root, env, root / "shared")
    check_outcome(case, outcome)


def test_table_is_large_and_ids_unique() -> None:
    ids = [Case.of(c).id for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)


# --------------------------------------------------------------------------------------------------------
# numba's cache: no writable cache folder is no longer a crash at import

_KERNELS_PROBE = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("kernels_copy", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(mod.keys_of(np.array([0, 0x80000000, 0x3F800000], np.uint32)).tolist())
"""


def _kernels_in_unwritable_place(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """kernels.py where numba's two default cache folders cannot be made — also as root, for whom permission
    bits change nothing: ``__pycache__`` beside the source is a file, and ``$HOME`` lies under a file."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copy(ROOT / "reprolib" / "metrics" / "kernels.py", pkg / "kernels.py")
    (pkg / "__pycache__").write_text("a file where numba wants its cache folder\n")
    (tmp_path / "home").write_text("a file: nothing can be created under it\n")
    pkg.chmod(0o555)  # for a non-root user, the package folder is also read-only
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_") and k != "XDG_CACHE_HOME"}
    env.update(HOME=str(tmp_path / "home" / "me"), PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    return pkg / "kernels.py", env


def test_numba_cache_falls_back_to_a_temp_folder_then_to_no_cache(tmp_path: Path) -> None:
    kernels, env = _kernels_in_unwritable_place(tmp_path)
    expected = "[2147483648, 2147483648, 3212836864]"  # keys of +0.0, -0.0 (same key) and 1.0
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    try:
        ok = subprocess.run([sys.executable, "-c", _KERNELS_PROBE, str(kernels)], env={**env, "TMPDIR": str(tmp)},
                            capture_output=True, text=True, timeout=300)
        assert ok.returncode == 0 and ok.stdout.strip() == expected, ok.stderr[-2000:]
        assert "cannot cache" not in ok.stderr
        uid = os.getuid()
        assert list((tmp / f"reprolib-numba-{uid}").rglob("*.nbi")), "the fallback cache folder was not used"
        # no folder at all: compiled without a cache, same result
        blocked = tmp_path / "tmp2"
        blocked.mkdir()
        (blocked / f"reprolib-numba-{uid}").write_text("a file\n")
        none = subprocess.run([sys.executable, "-c", _KERNELS_PROBE, str(kernels)], env={**env, "TMPDIR": str(blocked)},
                              capture_output=True, text=True, timeout=300)
        assert none.returncode == 0 and none.stdout.strip() == expected, none.stderr[-2000:]
        assert all(tmp in p.parents for p in tmp_path.rglob("*.nbi"))  # nothing cached anywhere else
    finally:
        kernels.parent.chmod(0o755)


# --------------------------------------------------------------------------------------------------------
# result rows: the runs rewrite results/, which must not make the recorded commit "-dirty"


def test_commit_ignores_changes_under_results(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "results" / "table4").mkdir(parents=True)
    (tmp_path / "results" / "table4" / "table4.csv").write_text("a\n1\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    clean = git_commit(tmp_path)
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (tmp_path / "results" / "table4" / "table4.csv").write_text("a\n2\n")
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "-dirty"
