"""fp32 means IEEE fp32 (reprolib.precision): no stage that runs a network lets cuDNN or cuBLAS use TF32.

PyTorch allows TF32 in cuDNN convolutions by default, which Ampere and newer GPUs use for fp32 convolutions. No GPU
is needed to check the settings: each stage's convolutions are recorded with the TF32 setting in force at the time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from reprolib.precision import ieee_fp32, tf32_allowed

sys.path.insert(0, str(Path(__file__).parent))
from _make_backends import make_cityscapes_tree, make_fs_static, make_generated_split  # noqa: E402
from _make_processed import make_processed_split  # noqa: E402

SIZE = (64, 128)


@pytest.fixture(autouse=True)
def _user_settings() -> Iterator[None]:
    """Each test starts from PyTorch's defaults (cuDNN TF32 allowed) and leaves them as it found them."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32 = cudnn
    torch.set_float32_matmul_precision(matmul)


def test_tf32_is_off_inside_and_the_user_settings_come_back() -> None:
    assert tf32_allowed()  # PyTorch's default for cuDNN convolutions
    with ieee_fp32():
        assert not tf32_allowed() and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
        with ieee_fp32():
            pass
        assert not tf32_allowed()  # an inner stage does not turn it back on for the outer one
    assert tf32_allowed() and torch.backends.cudnn.allow_tf32

    torch.set_float32_matmul_precision("high")  # the user's own choice for their matmuls
    with pytest.raises(KeyError), ieee_fp32():
        assert not tf32_allowed()
        raise KeyError("a stage that fails")
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32


@pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="PyTorch < 2.9 has no per-op TF32 settings")
def test_per_op_settings_are_kept_even_where_the_legacy_flag_cannot_be_read() -> None:
    conv, rnn = torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision
    try:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision = "tf32", "ieee"
        with ieee_fp32():
            assert not tf32_allowed()
        assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision) == ("tf32", "ieee")
        assert tf32_allowed()
    finally:
        torch.backends.cudnn.allow_tf32 = True  # the legacy setter makes conv and RNN agree again
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision = conv, rnn


def _train(tmp: Path, seen: list[bool]) -> None:
    from reprolib.training import train

    train(dict(train_split=str(make_processed_split(tmp / "train", 4)),
               val_split=str(make_processed_split(tmp / "val", 2, seed=1)), size=list(SIZE), batch_size=2,
               max_steps=2, val_every_n_steps=2, model={"width": 0.0625, "pretrained": False},
               wandb_mode="disabled", seed=0), tmp / "run")


def _select(tmp: Path, seen: list[bool]) -> None:
    from reprolib.training import train
    from reprolib.training.selection import start_from_trajectory

    splits = {name: str(make_processed_split(tmp / name, n, seed=s))
              for name, n, s in (("train", 4, 0), ("val", 2, 1), ("laf", 2, 2), ("static", 2, 3))}
    base = dict(train_split=splits["train"], val_split=splits["val"], size=list(SIZE), batch_size=2, max_steps=2,
                val_every_n_steps=2, checkpoint_every=1, model={"width": 0.0625, "pretrained": False},
                wandb_mode="disabled", seed=0)
    trained = train(base, tmp / "corrected")
    report = {**base, "val_split": splits["laf"], "val_label_dir": "labels", "plateau_split": splits["static"],
              "plateau_label_dir": "labels"}
    seen.clear()  # only the selection's own validations
    assert start_from_trajectory(report, tmp / "selected", trained) == "finished"


def _precompute(tmp: Path, seen: list[bool]) -> None:
    from reprolib.backends import build_generator, build_segmentation
    from reprolib.maps import PerceptualDifference
    from reprolib.precompute import GeneratedSplitSource, precompute

    split = make_generated_split(tmp / "gen", n=2, size=SIZE, seed=0)
    precompute(GeneratedSplitSource(split), build_segmentation("light", seed=0).eval(),
               build_generator("light", seed=0).eval(), tmp / "out", size=SIZE, batch_size=2,
               perceptual=PerceptualDifference(pretrained=False), progress=False)


def _score(tmp: Path, seen: list[bool]) -> None:
    from reprolib.experiments.scoring import score_split
    from reprolib.models import DissimilarityConfig, DissimilarityNet

    net = DissimilarityNet(DissimilarityConfig.main(width=0.0625, pretrained=False))
    score_split(net, make_processed_split(tmp / "split", 2), size=SIZE)


def _backends(tmp: Path, seen: list[bool]) -> None:
    from reprolib.training.embedded_backends import train_embedded_backends

    make_cityscapes_tree(tmp / "world" / "cityscapes", n_train=2, n_val=2, size=SIZE, seed=1)
    tree = make_fs_static(tmp / "world", n=2)
    train_embedded_backends(tree, tmp / "run", strength="light", seed=0, max_steps=2, image_size=SIZE,
                            progress=False)


STAGES: dict[str, Callable[[Path, list[bool]], None]] = {
    "training": _train, "checkpoint selection": _select, "precompute": _precompute, "scoring": _score,
    "embedded backends' training": _backends,
}


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_convolves_in_ieee_fp32(stage: str, tf32_at_convolutions: list[bool], tmp_path: Path) -> None:
    convolutions = tf32_at_convolutions
    STAGES[stage](tmp_path, convolutions)
    assert convolutions and not any(convolutions), f"{stage}: {sum(convolutions)} of {len(convolutions)} with TF32"
    assert tf32_allowed()  # and the process's settings are back afterwards
