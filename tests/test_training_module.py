"""The thin LightningModule: validation metrics and loss over the whole set under DDP (gathered, each image once,
not averaged per rank)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from reprolib.training.module import DissimilarityModule


def _samples(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        label = (torch.rand(64, 128, generator=g) < 0.15).long()
        label[:3] = 255
        out.append({"original": torch.rand(1, 3, 64, 128, generator=g), "synthesis": torch.rand(1, 3, 64, 128, generator=g),
                    "semantic": F.one_hot(torch.randint(0, 19, (1, 64, 128), generator=g), 19).permute(0, 3, 1, 2).float(),
                    **{k: torch.rand(1, 1, 64, 128, generator=g) for k in ("entropy", "perceptual", "distance")},
                    "label": label[None], "name": [f"img{i:03d}"]})
    return out


def _validate(module: DissimilarityModule, batches: list[dict], world_size: int, gather=None,  # noqa: ANN001
              rank: int = 0, batch_size: int = 1) -> dict:
    logged: dict[str, float] = {}
    module._trainer = SimpleNamespace(world_size=world_size, global_rank=rank, sanity_checking=False,
                                      val_dataloaders=SimpleNamespace(batch_size=batch_size))
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))  # type: ignore[method-assign]
    module.on_validation_epoch_start()
    with torch.no_grad():
        for i, b in enumerate(batches):
            module.validation_step(b, i)
    if gather is not None:
        gather(module)
    module.on_validation_epoch_end()
    return logged


def test_ddp_validation_metrics_cover_the_whole_set(monkeypatch: pytest.MonkeyPatch) -> None:
    module = DissimilarityModule({"width": 0.0625, "pretrained": False}, class_weights=[1.0, 5.0]).eval()
    data = _samples(5)
    single = _validate(module, data, world_size=1)
    # two ranks: rank 0 has images 0, 2, 4; rank 1 has 1, 3 and a padding duplicate of image 0 (DistributedSampler)
    rank0 = {}

    def capture(out: list, obj: object) -> None:
        rank0["obj"] = obj
        out[:] = [obj, obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", capture)
    per_rank0 = _validate(module, [data[0], data[2], data[4]], world_size=2, rank=0)

    def both(out: list, obj: object) -> None:
        out[:] = [rank0["obj"], obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", both)
    merged = _validate(module, [data[1], data[3], data[0]], world_size=2, rank=1)
    for key in ("val/ap", "val/fpr95", "val/auroc"):
        assert merged[key] == pytest.approx(single[key], abs=1e-9), key
    assert any(per_rank0[k] != pytest.approx(single[k], abs=1e-6) for k in ("val/ap", "val/auroc")), \
        "the check needs a rank whose own metrics differ from the whole set's"
    assert merged["val/loss"] == pytest.approx(single["val/loss"], rel=1e-6)  # the padded duplicate counts once


def _batch_invariant(module: DissimilarityModule) -> DissimilarityModule:
    """The network run on each image of a batch alone. oneDNN picks its convolution kernels by batch size (on an AMD
    EPYC one image's logits moved by 1e-6 between a batch of one and a batch of two, and val/ap by 4e-8), while the
    tests below are about how the ranks' batches are merged, to 1e-9."""
    whole = module.forward

    def forward(batch: dict) -> torch.Tensor:
        return torch.cat([whole({k: v[i:i + 1] for k, v in batch.items()}) for i in range(len(batch["name"]))])

    module.forward = forward  # type: ignore[method-assign]
    return module


def _batch(samples: list[dict]) -> dict:
    """Samples of :func:`_samples` (each a batch of one) as one batch, as the DataLoader would collate them."""
    return {k: (sum((s[k] for s in samples), []) if k == "name" else torch.cat([s[k] for s in samples]))
            for k in samples[0]}


@pytest.mark.parametrize(("n", "batch_size"), [(3, 1), (5, 2), (5, 4)])
@pytest.mark.parametrize("ensemble_mode", [None, "probability"])
def test_ddp_validation_loss_is_the_one_device_loss(monkeypatch: pytest.MonkeyPatch, n: int, batch_size: int,
                                                    ensemble_mode: str | None) -> None:
    """val/loss (it picks best.ckpt) under DDP = one device's, although DistributedSampler pads a duplicate in
    and deals the images into other batches: one device's batch loss is pixel-weighted over its batch."""
    module = _batch_invariant(DissimilarityModule({"width": 0.0625, "pretrained": False}, class_weights=[1.0, 5.0],
                                                  ensemble_mode=ensemble_mode).eval())
    data = _samples(n)
    for i, sample in enumerate(data):  # images with different numbers of counted pixels: grouping matters
        sample["label"][:, : 5 * i] = 255
    single = _validate(module, [_batch(data[i:i + batch_size]) for i in range(0, n, batch_size)], world_size=1,
                       batch_size=batch_size)
    # DistributedSampler(shuffle=False) on 2 ranks: rank r takes positions r, r+2, … of the set padded with its
    # first images to an even length (n odd here: rank 1 ends with a duplicate of image 0), in batches of batch_size
    per_rank = []
    for rank in range(2):
        order = [data[p % n] for p in range(rank, n + n % 2, 2)]
        per_rank.append([_batch(order[i:i + batch_size]) for i in range(0, len(order), batch_size)])
    assert per_rank[1][-1]["name"][-1] == data[0]["name"][0]
    # the old reduction, each rank batch's loss weighted by its images, padding included, is off: the test can tell
    batch_losses = [(module.loss_and_prob(b)[0].item(), len(b["name"])) for batches in per_rank for b in batches]
    old = sum(loss * k for loss, k in batch_losses) / sum(k for _, k in batch_losses)
    assert abs(old - single["val/loss"]) > 1e-5
    rank0 = {}

    def capture(out: list, obj: object) -> None:
        rank0["obj"] = obj
        out[:] = [obj, obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", capture)
    _validate(module, per_rank[0], world_size=2, rank=0, batch_size=batch_size)

    def both(out: list, obj: object) -> None:
        out[:] = [rank0["obj"], obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", both)
    merged = _validate(module, per_rank[1], world_size=2, rank=1, batch_size=batch_size)
    assert merged["val/loss"] == pytest.approx(single["val/loss"], rel=1e-6)
    for key in ("val/ap", "val/fpr95", "val/auroc"):
        assert merged[key] == pytest.approx(single[key], abs=1e-9), key


def test_ddp_plateau_loader_uses_its_own_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a plateau split (two val loaders), each loader's loss is regrouped with that loader's batch size and
    its own images: plateau_val/loss under DDP = the one-device value, and val/loss is not mixed into it."""
    module = DissimilarityModule({"width": 0.0625, "pretrained": False}, class_weights=[1.0, 5.0], plateau_every=1,
                                 plateau_loader=1).eval()
    module.configure_optimizers()
    val, plateau = _samples(4), _samples(5)[1:]  # other images (and pixels) under the plateau loader
    for i, s in enumerate(plateau):
        s["name"] = [f"plateau{i:03d}"]
    plateau[0]["label"][:, 3:40] = 1  # images of unequal class weight: how they are batched moves the loss

    def run(world: int, rank: int, val_batches: list[dict], plateau_batches: list[dict], sizes: tuple[int, int]) -> dict:
        logged: dict[str, float] = {}
        module._trainer = SimpleNamespace(world_size=world, global_rank=rank, sanity_checking=False,
                                          val_dataloaders=[SimpleNamespace(batch_size=b) for b in sizes])
        module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))  # type: ignore[method-assign]
        module.log_dict = lambda d, **kw: logged.update({k: float(v) for k, v in d.items()})  # type: ignore[method-assign]
        module.on_validation_epoch_start()
        with torch.no_grad():
            for i, b in enumerate(val_batches):
                module.validation_step(b, i, dataloader_idx=0)
            for i, b in enumerate(plateau_batches):
                module.validation_step(b, i, dataloader_idx=1)
        module.on_validation_epoch_end()
        return logged

    single = run(1, 0, [_batch(val[:2]), _batch(val[2:])], [_batch(plateau[:1]), _batch(plateau[1:])], (2, 1))
    # one device, plateau loader at batch 1: its loss is the mean of per-image losses
    gathered: dict[str, list] = {"objs": []}

    def gather(out: list, obj: object) -> None:  # rank 1 replays what rank 0 sent, loader by loader
        gathered["objs"].append(obj)
        out[:] = [obj, obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", gather)
    run(2, 0, [_batch([val[0], val[2]])], [plateau[0], plateau[2]], (2, 1))
    sent = list(gathered["objs"])

    def gather_rank1(out: list, obj: object) -> None:
        out[:] = [sent.pop(0), obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", gather_rank1)
    merged = run(2, 1, [_batch([val[1], val[3]])], [plateau[1], plateau[3]], (2, 1))
    # fp32 sums in another order: a few ulp; regrouping with the other loader's batch size is 100× further off
    assert merged["val/loss"] == pytest.approx(single["val/loss"], rel=1e-5)
    assert merged["plateau_val/loss"] == pytest.approx(single["plateau_val/loss"], rel=1e-5)
    assert single["plateau_val/loss"] != pytest.approx(single["val/loss"], rel=1e-3)
    wrong = run(1, 0, [_batch(val[:2]), _batch(val[2:])], [_batch(plateau[:2]), _batch(plateau[2:])], (2, 2))
    assert wrong["plateau_val/loss"] != pytest.approx(single["plateau_val/loss"], rel=1e-3)


def test_the_data_module_reads_the_maps_only_when_asked(tmp_path) -> None:
    """``uncertainty=False`` trains from splits without the map folders (a network without the uncertainty
    maps needs none); the default reads and checks them."""
    import shutil
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _make_processed import make_processed_split

    from reprolib.io import ReprolibDataError
    from reprolib.training.data import DissimilarityDataModule

    split = make_processed_split(tmp_path / "split", 2)
    for folder in ("entropy", "mae_features", "logit_distance"):
        shutil.rmtree(split / folder, ignore_errors=True)
    without = DissimilarityDataModule(str(split), str(split), size=(64, 128), uncertainty=False)
    without.setup("fit")
    item = without.train_ds[0]
    assert "original" in item and not {"entropy", "perceptual", "distance"} & set(item)
    with pytest.raises(ReprolibDataError, match="entropy"):
        DissimilarityDataModule(str(split), None, size=(64, 128)).setup("fit")


def test_per_image_validation_loss_is_the_originals_batch_of_one_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    """val_loss="per_image" (the report's selection): the mean of each image's class-weighted cross-entropy, as the
    original's batch-1 validation loader gives it, whatever the loader's batch size and on any number of ranks; the
    default ("pooled") pools the pixels of a training-size batch, which weighs images with more counted pixels more."""
    data = _samples(5)
    for i, sample in enumerate(data):  # images with different numbers of counted pixels and anomalies
        sample["label"][:, : 6 * i] = 255
        sample["label"][:, 40: 40 + 5 * i] = 1
    pooled = _batch_invariant(DissimilarityModule({"width": 0.0625, "pretrained": False}, class_weights=[1.0, 5.0]).eval())
    per_image = _batch_invariant(DissimilarityModule({"width": 0.0625, "pretrained": False}, class_weights=[1.0, 5.0],
                                                     val_loss="per_image").eval())
    per_image.load_state_dict(pooled.state_dict())
    with torch.no_grad():  # the original: one image a batch, F.cross_entropy's weighted mean, averaged over images
        expected = sum(F.cross_entropy(pooled(s).float(), s["label"], weight=torch.tensor([1.0, 5.0]),
                                       ignore_index=255).item() for s in data) / len(data)
    batches = [_batch(data[:4]), _batch(data[4:])]
    one_device = _validate(per_image, batches, world_size=1, batch_size=4)
    assert one_device["val/loss"] == pytest.approx(expected, rel=1e-6)
    assert _validate(per_image, data, world_size=1)["val/loss"] == pytest.approx(expected, rel=1e-6)
    # pooled over batches of 4 is another number here (the test can tell them apart)
    assert abs(_validate(pooled, batches, world_size=1, batch_size=4)["val/loss"] - expected) > 1e-4
    # two ranks, with DistributedSampler's padded duplicate of image 0: each image still counts once
    rank0 = {}

    def capture(out: list, obj: object) -> None:
        rank0["obj"] = obj
        out[:] = [obj, obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", capture)
    _validate(per_image, [_batch([data[0], data[2]]), _batch([data[4]])], world_size=2, rank=0, batch_size=2)

    def both(out: list, obj: object) -> None:
        out[:] = [rank0["obj"], obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", both)
    merged = _validate(per_image, [_batch([data[1], data[3]]), _batch([data[0]])], world_size=2, rank=1, batch_size=2)
    assert merged["val/loss"] == pytest.approx(expected, rel=1e-6)


def test_val_loss_is_checked_and_stays_out_of_the_checkpoints_hyperparameters() -> None:
    with pytest.raises(ValueError, match="val_loss must be one of"):
        DissimilarityModule({"width": 0.0625, "pretrained": False}, val_loss="mean")
    module = DissimilarityModule({"width": 0.0625, "pretrained": False}, val_loss="per_image")
    assert "val_loss" not in module.hparams  # checkpoints of every earlier run keep their bytes (content-named)
