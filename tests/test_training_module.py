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
    module = DissimilarityModule({"width": 0.0625, "pretrained": False}, class_weights=[1.0, 5.0],
                                 ensemble_mode=ensemble_mode).eval()
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
