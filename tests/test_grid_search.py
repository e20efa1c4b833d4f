"""Grid-search ensemble (spec §3.2): candidate counts, recovering known weights, fixed mix."""

from __future__ import annotations

import numpy as np
import pytest

from reprolib.ensemble import FIXED_ENSEMBLE, candidate_weights, combine, grid_search


def test_candidate_counts_match_the_original() -> None:
    cands, tried = candidate_weights()
    assert tried == 252 and len(cands) == 224
    assert all(abs(sum(c) - 1) < 1e-12 for c in cands)
    assert (0.25, 0.25, 0.25, 0.25) not in cands  # all-equal vectors are skipped


def _synthetic(seed: int = 0, n: int = 6) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    labels = [(rng.random((32, 32)) < 0.1).astype(np.uint8) for _ in range(n)]
    maps = {
        "dissimilarity": [rng.random((32, 32)) for _ in labels],  # noise
        "entropy": [np.clip(0.6 * y + 0.5 * rng.random((32, 32)), 0, 1) for y in labels],  # signal
        "perceptual": [rng.random((32, 32)) for _ in labels],  # noise
        "distance": [np.clip(0.6 * y + 0.5 * rng.random((32, 32)), 0, 1) for y in labels],  # signal
    }
    return maps, labels


@pytest.mark.parametrize("objective", ["fpr95", "ap_minus_fpr95"])
def test_recovers_the_informative_maps(objective: str) -> None:
    maps, labels = _synthetic()
    res = grid_search(maps, labels, objective=objective)
    w = res.weights
    assert w["entropy"] + w["distance"] >= 0.99 and w["dissimilarity"] == 0 and w["perceptual"] == 0
    assert len(res.table) == 224
    if objective == "fpr95":
        assert res.metrics["fpr95"] == pytest.approx(res.table["fpr95"].min())


def test_combine_and_fixed_mix() -> None:
    maps, _ = _synthetic(n=2)
    mixed = combine(maps, FIXED_ENSEMBLE)
    np.testing.assert_allclose(mixed[1], 0.75 * maps["dissimilarity"][1] + 0.25 * maps["entropy"][1], rtol=1e-6)
    with pytest.raises(ValueError, match="objective"):
        grid_search(maps, [np.zeros((32, 32))] * 2, objective="auc")


def test_combine_is_the_tables_weighted_sum_and_checks_its_weights() -> None:
    maps, labels = _synthetic(n=2)
    f32 = {k: [np.asarray(m, np.float32) for m in v] for k, v in maps.items()}
    # other entries (the scores' "label") are ignored; float32 maps give exactly the term-by-term sum in ORDER
    mixed = combine({**f32, "label": labels}, FIXED_ENSEMBLE)
    expected = (0.75 * f32["dissimilarity"][1] + 0.25 * f32["entropy"][1] + 0.0 * f32["perceptual"][1]
                + 0.0 * f32["distance"][1])
    assert mixed[1].dtype == np.float32
    np.testing.assert_array_equal(mixed[1], expected)
    # a zero weight may name an absent map; a non-zero one may not, nor may a weight name an unknown map
    only = combine({"dissimilarity": f32["dissimilarity"]}, {"dissimilarity": 1.0, "entropy": 0.0})
    np.testing.assert_array_equal(only[0], f32["dissimilarity"][0])
    with pytest.raises(ValueError, match="not given: \\['entropy'\\]"):
        combine({"dissimilarity": f32["dissimilarity"]}, FIXED_ENSEMBLE)
    with pytest.raises(ValueError, match="unknown maps \\['entropie'\\]"):
        combine(f32, {"entropie": 1.0})
