"""Figure 3: the authors' published model's p(anomaly) beside ours when its checkpoint is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from _make_processed import make_processed_split

from reprolib.experiments.figures import PUBLISHED_ENV, published_checkpoint, published_scores, qualitative_figure
from reprolib.experiments.scoring import score_split
from reprolib.models import DissimilarityNet, from_original_state_dict, to_original_state_dict, variant_config

SIZE = (64, 128)


def test_published_prediction_beside_ours(tmp_path: Path, monkeypatch) -> None:
    split = make_processed_split(tmp_path / "split", 1, size=SIZE)
    torch.manual_seed(0)
    theirs = DissimilarityNet(variant_config("main"))
    path = tmp_path / "best_net_baseline_void_prior_spadedecoder_mult_3.pth"
    torch.save(to_original_state_dict(theirs), path)
    monkeypatch.delenv(PUBLISHED_ENV, raising=False)
    assert published_checkpoint(None) is None and published_scores(None, split, size=SIZE) is None
    monkeypatch.setenv(PUBLISHED_ENV, str(path))
    assert published_checkpoint(None) == path
    monkeypatch.delenv(PUBLISHED_ENV)

    published = published_scores({"dissimilarity": str(path)}, split, size=SIZE)
    expected = score_split(from_original_state_dict(path, "main"), split, size=SIZE)["dissimilarity"]
    assert len(published) == 1 and all(np.array_equal(a, b) for a, b in zip(published, expected, strict=True))

    rng = np.random.default_rng(0)
    ours = {k: [rng.random(SIZE, dtype=np.float32)] for k in ("dissimilarity", "entropy", "perceptual", "distance")}
    ours["label"] = [np.zeros(SIZE, np.uint8)]
    out = qualitative_figure(split, ours, tmp_path / "with.png", published=published)
    plain = qualitative_figure(split, ours, tmp_path / "without.png")
    from PIL import Image

    w_with, w_without = Image.open(out).size[0], Image.open(plain).size[0]
    assert w_with > w_without  # one more column: the authors' p(anomaly)
