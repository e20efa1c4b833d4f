"""The thin LightningModule: validation metrics over the whole set under DDP (gathered, not averaged per rank)."""

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


def _validate(module: DissimilarityModule, batches: list[dict], world_size: int, gather=None) -> dict:  # noqa: ANN001
    logged: dict[str, float] = {}
    module._trainer = SimpleNamespace(world_size=world_size, global_rank=0, sanity_checking=False)
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
    per_rank0 = _validate(module, [data[0], data[2], data[4]], world_size=2)

    def both(out: list, obj: object) -> None:
        out[:] = [rank0["obj"], obj]

    monkeypatch.setattr(torch.distributed, "all_gather_object", both)
    merged = _validate(module, [data[1], data[3], data[0]], world_size=2)
    for key in ("val/ap", "val/fpr95", "val/auroc"):
        assert merged[key] == pytest.approx(single[key], abs=1e-9), key
    assert any(per_rank0[k] != pytest.approx(single[k], abs=1e-6) for k in ("val/ap", "val/auroc")), \
        "the check needs a rank whose own metrics differ from the whole set's"
    # the loss is the sample-weighted mean over every rank's batches (a padded duplicate counts, as in Lightning)
    losses = [module.loss_and_prob(b)[0].item() for b in (data[1], data[3], data[0], data[0], data[2], data[4])]
    assert merged["val/loss"] == pytest.approx(sum(losses) / 6, rel=1e-6)
