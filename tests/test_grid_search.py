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


def test_allowed_keeps_a_removed_map_at_zero_weight() -> None:
    """Table 7: with H removed from the network, H is not a grid-search input either."""
    maps, labels = _synthetic()
    res = grid_search(maps, labels, allowed=("dissimilarity", "perceptual", "distance"))
    assert (res.table["entropy"] == 0).all() and res.weights["entropy"] == 0
    assert res.weights["distance"] > 0  # the remaining signal map is still found
    cands, _ = candidate_weights()
    assert len(res.table) == sum(1 for c in cands if c[1] == 0) < 224
    with pytest.raises(ValueError, match="allowed"):
        grid_search(maps, labels, allowed=("entropy", "distance"))  # the network's output cannot be dropped


def test_report_protocol_and_corrected_rows() -> None:
    """Both grid protocols: the MLRC's (AP - FPR95, tuned on the reported set) and ours (cross-fitted)."""
    from reprolib.experiments.ensembling import REPORT_OBJECTIVE, evaluate_ensemble, evaluate_with_scores, metrics_of
    from reprolib.experiments.scoring import select
    from reprolib.experiments.tables import REPORT_PROTOCOL, TABLES

    maps, labels = _synthetic(n=8)
    scores = {**maps, "label": labels}
    rows = evaluate_ensemble(scores, "grid", "fpr95")
    assert set(rows) == {"", REPORT_PROTOCOL} == {"", "@report_protocol"}
    metrics, info = rows[REPORT_PROTOCOL]
    same = grid_search(maps, labels, objective=REPORT_OBJECTIVE)
    assert REPORT_OBJECTIVE == "ap_minus_fpr95" and info["weights"] == same.weights
    assert metrics == metrics_of(combine(scores, same.weights), labels)
    assert "cross-fitted" in rows[""][1]["tuning"] and len(rows[""][1]["weights"]) == 2
    # Table 7: each variant's ensemble sees exactly the maps its network sees
    table7 = [v for v in TABLES["table7"].variants if v.selection == "corrected"]  # twins: the same networks
    assert [v.ensemble_maps() for v in TABLES["table7"].variants] == [v.ensemble_maps() for v in table7 for _ in (0, 1)]
    for variant in table7:
        allowed = variant.ensemble_maps()
        got = evaluate_ensemble(scores, variant.ensemble, "fpr95", maps=allowed)
        for _, info in got.values():
            assert info["allowed"] == ["dissimilarity", *allowed]
            for w in info["weights"] if isinstance(info["weights"], list) else [info["weights"]]:
                assert all(w[m] == 0 for m in ("entropy", "perceptual", "distance") if m not in allowed)
    # Table 4's networks without maps would get none in an ensemble either
    assert {v.name: v.ensemble_maps() for v in TABLES["table4"].variants if v.model} == {
        "no_uncertainty": (), "no_generator_no_uncertainty": (), "no_uncertainty@report_selection": (),
        "no_generator_no_uncertainty@report_selection": ()}
    assert [v.ensemble_maps() for v in table7] == [
        ("entropy", "perceptual", "distance"), ("perceptual", "distance"), ("entropy", "perceptual"),
        ("entropy", "distance")]
    no_h_rows, scored = evaluate_with_scores(scores, "grid", "fpr95", ("perceptual", "distance"))
    no_h, groups = scored[""]
    assert len(no_h) == len(labels) and groups.tolist() == [0, 1] * 4
    # the report-protocol row's own scores (its intervals): the weights tuned on all images, no halves
    reported, none = scored[REPORT_PROTOCOL]
    assert none is None and metrics_of(reported, labels) == no_h_rows[REPORT_PROTOCOL][0]
    weights = no_h_rows[REPORT_PROTOCOL][1]["weights"]
    assert all(np.array_equal(a, b) for a, b in zip(reported, combine(scores, weights), strict=True))
    # the cross-fitted row: each half scored with the other half's weights, its metrics averaged over the halves
    same_rows, scored = evaluate_with_scores(scores, "grid", "fpr95")
    mixed = scored[""][0]
    assert same_rows == rows
    w_odd, w_even = rows[""][1]["weights"]  # tuned on the even images (score the odd ones), then the reverse
    for i in range(len(labels)):
        np.testing.assert_array_equal(mixed[i], combine(select(scores, [i]), w_even if i % 2 == 0 else w_odd)[0])
    each = [metrics_of([mixed[i] for i in range(h, 8, 2)], [labels[i] for i in range(h, 8, 2)]) for h in (0, 1)]
    assert rows[""][0] == pytest.approx({k: (each[0][k] + each[1][k]) / 2 for k in each[0]}, abs=1e-12)
    assert rows[""][1]["metrics"] == "mean of the two halves'"


def test_scores_cache_keeps_float32(tmp_path) -> None:
    """Scores near 1.0 stay distinct through the cache (float16 would merge them into ties)."""
    from reprolib.experiments.scoring import load_scores, save_scores

    near_one = np.float32(1) - np.arange(1, 65, dtype=np.float32).reshape(8, 8) * np.float32(1e-6)
    assert len(np.unique(near_one.astype(np.float16))) < 3  # what the old float16 cache did
    scores = {"dissimilarity": [near_one], "entropy": [near_one], "perceptual": [near_one], "distance": [near_one],
              "label": [np.zeros((8, 8), np.uint8)]}
    save_scores(scores, tmp_path / "s.npz")
    back = load_scores(tmp_path / "s.npz")
    assert back["dissimilarity"][0].dtype == np.float32
    np.testing.assert_array_equal(back["dissimilarity"][0], near_one)
    assert len(np.unique(back["dissimilarity"][0])) == 64


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


def test_pooled_search_equals_the_streaming_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    module = sys.modules["reprolib.ensemble.grid_search"]
    maps, labels = _synthetic(seed=4)
    maps = {k: [np.round(m, 2).astype(np.float32) for m in v] for k, v in maps.items()}  # ties, as 8-bit maps
    labels[0][:3] = 255  # void pixels are skipped in both paths
    fast = grid_search(maps, labels)
    assert module._Pooled.of(maps, labels) is not None
    monkeypatch.setattr(module._Pooled, "MAX_PIXELS", 0)  # past the limit: the streaming metric per candidate
    assert module._Pooled.of(maps, labels) is None
    slow = grid_search(maps, labels)
    assert fast.weights == slow.weights
    for k in ("ap", "fpr95", "auroc"):
        np.testing.assert_allclose(fast.table[k], slow.table[k], rtol=0, atol=1e-12)


def test_candidates_on_several_threads_give_one_threads_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pooled candidates run on grid_threads() threads (the ensembles of a table: ~1.8× on 2 cores); the table
    they make is the one thread's, value for value and in the same order."""
    import sys
    import threading

    module = sys.modules["reprolib.ensemble.grid_search"]
    maps, labels = _synthetic(seed=5)
    seen: set[str] = set()
    metrics = module._Pooled.metrics

    def recording(self, weights):
        seen.add(threading.current_thread().name)
        return metrics(self, weights)

    monkeypatch.setattr(module._Pooled, "metrics", recording)
    monkeypatch.setattr(module, "grid_threads", lambda: 3)
    many = grid_search(maps, labels)
    assert len(seen) == 3 and all(name.startswith("grid") for name in seen), seen
    monkeypatch.setattr(module, "grid_threads", lambda: 1)
    seen.clear()
    one = grid_search(maps, labels)
    assert seen == {threading.current_thread().name}
    assert many.weights == one.weights
    assert many.table.equals(one.table)  # same order, same values to the bit


def test_cross_fit_keeps_each_recording_sequence_in_one_half(tmp_path) -> None:
    """Frames of one Lost & Found sequence are near-duplicates: split apart, the weights scoring one frame would
    be tuned on its copy. The halves take whole sequences, as balanced as they allow."""
    from reprolib.experiments.ensembling import evaluate_with_scores
    from reprolib.experiments.scoring import crossfit_halves, image_sequences, split_sequences
    from tests._make_processed import make_processed_split

    names = ["0000_04_Maurener_Weg_8_000002_000140", "0001_04_Maurener_Weg_8_000002_000150",
             "0002_04_Maurener_Weg_8_000003_000010", "0003_frankfurt_000001_000019", "0004_image"]
    assert image_sequences(names) == ["04_Maurener_Weg_8_000002", "04_Maurener_Weg_8_000002",
                                      "04_Maurener_Weg_8_000003", "frankfurt_000001", "0004_image"]
    # one image per sequence (FS Static, the embedded world): the even and the odd images, as before
    a, b = crossfit_halves([f"s{i}" for i in range(7)])
    assert a.tolist() == [0, 2, 4, 6] and b.tolist() == [1, 3, 5]
    sequences = ["A", "A", "B", "C", "A", "B", "D", "A", "C", "E"]  # A: 4 frames, B: 2, C: 2, D, E: 1
    a, b = crossfit_halves(sequences)
    assert {sequences[i] for i in a}.isdisjoint({sequences[i] for i in b})
    assert sorted([a.tolist(), b.tolist()], key=len) == [[0, 1, 4, 6, 7], [2, 3, 5, 8, 9]]
    with pytest.raises(ValueError, match="two recording sequences"):
        crossfit_halves(["A"] * 4)

    maps, labels = _synthetic(n=10)
    scores = {**maps, "label": labels}
    rows, scored = evaluate_with_scores(scores, "grid", "fpr95", sequences=sequences)
    assert rows[""][1]["halves"] == {"images": [5, 5], "sequences": [2, 3]}
    assert scored[""][1].tolist() == [0, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    assert rows != evaluate_with_scores(scores, "grid", "fpr95")[0]  # even/odd: another cross-fit
    assert evaluate_with_scores(scores, "grid", "fpr95")[0] == evaluate_with_scores(
        scores, "grid", "fpr95", sequences=[str(i) for i in range(10)])[0]
    with pytest.raises(ValueError, match="9 sequences for 10 scored images"):
        evaluate_with_scores(scores, "grid", "fpr95", sequences=sequences[:-1])

    # a processed split's sequences come from its image names, in the order its images are scored
    split = make_processed_split(tmp_path / "split", n=3)
    for folder in split.iterdir():
        for i, png in enumerate(sorted(folder.glob("*.png"))):
            png.rename(folder / f"{i:04d}_04_Maurener_Weg_8_{i // 2:06d}_{i:06d}.png")
    assert split_sequences(split) == ["04_Maurener_Weg_8_000000"] * 2 + ["04_Maurener_Weg_8_000001"]


@pytest.mark.parametrize("mode", ["none", "learned-probability", "learned-anomaly_logit", "learned-repro"])
def test_networks_with_the_ensemble_inside_are_scored_as_they_are(mode: str) -> None:
    """Every mode TrainConfig accepts with the ensemble learned inside the network (or none) scores the network's
    p(anomaly) unchanged; an unknown mode is refused."""
    from reprolib.experiments.ensembling import evaluate_ensemble, metrics_of

    maps, labels = _synthetic(n=4)
    scores = {**maps, "label": labels}
    rows = evaluate_ensemble(scores, mode)
    assert set(rows) == {""} and rows[""] == (metrics_of(maps["dissimilarity"], labels), {"weights": "n/a"})
    with pytest.raises(ValueError, match="unknown ensemble mode 'learned-foo'"):
        evaluate_ensemble(scores, "learned-foo")
