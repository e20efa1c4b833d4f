"""`full` refuses random ImageNet weights before any work; every result row says which weights were used."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

from reprolib.experiments import run_table
from reprolib.experiments.profiles import get_pipeline_profile
from reprolib.experiments.results import result_rows, save_results
from reprolib.io import ReprolibDataError
from reprolib.models.encoders import build_encoder
from reprolib.models.pretrained import describe_imagenet_weights, require_imagenet_weights


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $TORCH_HOME (and no REPROLIB_*_WEIGHTS overrides)."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for arch in ("VGG16", "VGG19", "RESNET18", "RESNET101"):
        monkeypatch.delenv(f"REPROLIB_{arch}_WEIGHTS", raising=False)
    return home


def _fake_features(arch: str, path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's state-dict layout of ``arch``'s ``features`` (random values), saved at ``path``."""
    with torch.device("meta"):
        net = getattr(torchvision.models, arch)()
    gen = torch.Generator().manual_seed(seed)
    state = {f"features.{k}": torch.randn(v.shape, generator=gen) * 0.01 for k, v in net.features.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_full_refuses_missing_weights_before_any_file_is_written(torch_home: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    with pytest.raises(ReprolibDataError) as err:
        run_table("table4", profile="full", work_dir=work, output_dir=out, device="cpu")
    message = str(err.value)
    assert str(torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth") in message
    assert "REPROLIB_VGG16_WEIGHTS" in message and "random" in message
    assert not work.exists() and not out.exists() and not torch_home.exists()
    # with the encoder's file there, V's VGG19 is the next one asked for
    _fake_features("vgg16", torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth")
    with pytest.raises(ReprolibDataError, match=r"vgg19-dcbb9e9d\.pth"):
        get_pipeline_profile("full").check_imagenet_weights()
    assert not work.exists() and not out.exists()
    # demo, tiny and smoke may run on random weights
    for name in ("demo", "tiny", "smoke"):
        assert get_pipeline_profile(name).check_imagenet_weights() == {}


def test_full_refuses_missing_resnet_weights_for_figure4(torch_home: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Figure 4's ResNet rows start from ImageNet weights in `full` too (the report's trainer: pretrained: True):
    with the VGG files there but no ResNet file, the figures table refuses before any work, instead of training
    the ResNet encoders from random weights behind a warning."""
    from reprolib.experiments import pipeline

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the table started work without the ResNet ImageNet weights")

    monkeypatch.setattr(pipeline, "prepare_data", no_work)
    folder = torch_home / "hub" / "checkpoints"
    _fake_features("vgg16", folder / "vgg16-397923af.pth")
    _fake_features("vgg19", folder / "vgg19-dcbb9e9d.pth")
    work, out = tmp_path / "work", tmp_path / "out"
    with pytest.raises(ReprolibDataError, match=r"resnet18-f37072fd\.pth.*REPROLIB_RESNET18_WEIGHTS"):
        run_table("figures", profile="full", work_dir=work, output_dir=out, device="cpu")
    with pytest.raises(ReprolibDataError, match=r"resnet101-cd907fc2\.pth"):
        run_table("figures", profile="full", variants=["resnet101"], work_dir=work, output_dir=out, device="cpu")
    assert not work.exists() and not out.exists()
    full = get_pipeline_profile("full")
    assert full.pretrained_encoders([{}, {"encoder": "resnet18"}, {"encoder": "resnet101"}, {"lr": 1}]) == (
        "vgg16", "resnet18", "resnet101")
    assert full.pretrained_encoders([{"encoder": "resnet18", "pretrained": False}]) == ()
    assert get_pipeline_profile("demo").pretrained_encoders([{"encoder": "resnet18"}]) == ()  # width 0.125
    # a table whose networks are all VGG16 only needs the VGG files
    assert set(full.check_imagenet_weights(full.pretrained_encoders([{}]))) == {"vgg16", "vgg19"}
    # demo and the other profiles may run on random weights, ResNets included
    assert get_pipeline_profile("demo").check_imagenet_weights(("resnet18",)) == {}


def test_found_weights_load_and_are_named_in_rows(torch_home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = torch_home / "hub" / "checkpoints"
    state = _fake_features("vgg16", folder / "vgg16-397923af.pth", seed=1)
    vgg19 = tmp_path / "elsewhere" / "my-vgg19.pth"  # given by path through the environment
    _fake_features("vgg19", vgg19, seed=2)
    monkeypatch.setenv("REPROLIB_VGG19_WEIGHTS", str(vgg19))
    found = require_imagenet_weights()
    assert found == {"vgg16": folder / "vgg16-397923af.pth", "vgg19": vgg19}
    encoder = build_encoder("vgg16", 1.0, pretrained=True)  # the found file really is what the encoder gets
    encoder.init_weights(torch.Generator().manual_seed(0))
    assert torch.equal(encoder.state_dict()["stages.0.0.weight"], state["features.0.weight"])

    sha16 = hashlib.sha256((folder / "vgg16-397923af.pth").read_bytes()).hexdigest()[:12]
    sha19 = hashlib.sha256(vgg19.read_bytes()).hexdigest()[:12]
    rows = result_rows(table="table4", variant="full", dataset="fs_static", metrics={"ap": 0.5}, seed=3,
                       profile="full", config={"variant": ((), (), True, None, None)}, commit="x")
    assert rows[0]["imagenet_weights"] == f"vgg16: vgg16-397923af.pth sha256:{sha16}; vgg19: my-vgg19.pth sha256:{sha19}"
    demo = result_rows(table="table4", variant="full", dataset="fs_static", metrics={"ap": 0.5}, seed=3,
                       profile="demo", config={}, commit="x")
    assert demo[0]["imagenet_weights"] == f"vgg16: random (seed 3); vgg19: my-vgg19.pth sha256:{sha19}"
    resnet = result_rows(table="figures", variant="resnet18", dataset="fs_static", metrics={"ap": 0.5}, seed=0,
                         profile="full", config={"variant": ((("encoder", "resnet18"),), (), True, None, None)},
                         commit="x")
    assert resnet[0]["imagenet_weights"].startswith("resnet18: random (seed 0)")  # no resnet18 file here
    df = save_results(rows + demo, tmp_path / "rows.csv")
    assert df["imagenet_weights"].str.contains("sha256:").all()


def test_missing_env_file_and_random_description(torch_home: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROLIB_VGG16_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(ReprolibDataError, match=r"nope\.pth.*REPROLIB_VGG16_WEIGHTS"):
        require_imagenet_weights(("vgg16",))
    monkeypatch.delenv("REPROLIB_VGG16_WEIGHTS")
    assert describe_imagenet_weights("vgg16", True, seed=7) == "random (seed 7)"
    assert describe_imagenet_weights("vgg19", False, seed=0) == "random (seed 0)"


def test_other_imagenet_weights_are_another_run(torch_home: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's identity holds the ImageNet weights its encoder starts from when they are not torchvision's own file
    (or none was found): another file under the same name (or $REPROLIB_VGG16_WEIGHTS) trained a run that was then
    reused as if it came from the new weights, and its rows named the new file."""
    import json
    import os

    from _make_processed import make_processed_split

    from reprolib.models import pretrained
    from reprolib.training import train
    from reprolib.training.config import imagenet_weights_identity
    from reprolib.training.run import RunConflictError

    model = {"width": 1.0, "pretrained": True}
    assert imagenet_weights_identity(model) == "random"  # asked for, none found: the seeded init
    assert imagenet_weights_identity({"width": 0.125}) is None  # none asked for (width ≠ 1)
    assert imagenet_weights_identity({"pretrained": False}) is None
    path = torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    _fake_features("vgg16", path, seed=1)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert imagenet_weights_identity(model) == f"sha256:{sha[:16]}"  # torchvision's name, other bytes
    real_prefixes = pretrained.torchvision_sha_prefixes
    assert real_prefixes("vgg16") == ("397923af",) and real_prefixes("resnet101")[0] == "cd907fc2"
    monkeypatch.setattr(pretrained, "torchvision_sha_prefixes", lambda arch: (sha[:8],))
    assert imagenet_weights_identity(model) is None  # torchvision's own file: runs keep the names they had
    monkeypatch.setattr(pretrained, "torchvision_sha_prefixes", real_prefixes)

    split = make_processed_split(tmp_path / "train", 4)
    cfg = {"train_split": str(split), "size": [32, 64], "batch_size": 2, "max_steps": 1, "model": model,
           "wandb_mode": "disabled"}
    run = train(cfg, tmp_path / "run")
    assert json.loads((run / "config.json").read_text())["imagenet"] == f"sha256:{sha[:16]}"
    _fake_features("vgg16", path, seed=2)  # the file replaced by other weights
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(RunConflictError, match=r"imagenet \(stored 'sha256:"):
        train(cfg, run)
    with pytest.raises(ValueError, match="imagenet"):
        train({**cfg, "imagenet": f"sha256:{sha[:16]}"}, tmp_path / "other")  # names weights the file is not
