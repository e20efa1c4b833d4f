"""A whole table end to end on the tiny profile, and a table notebook executed by Papermill."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from reprolib.experiments import run_table
from reprolib.experiments.results import RESULT_COLUMNS, load_results
from reprolib.experiments.session import read_log
from reprolib.experiments.tables import TABLES
from reprolib.io import ReprolibDataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table4(tmp_path_factory) -> tuple[pd.DataFrame, Path, Path]:
    tmp = tmp_path_factory.mktemp("t4")
    df = run_table("table4", profile="tiny", work_dir=tmp / "work", output_dir=tmp / "out", device="cpu",
                   wandb_mode="disabled")
    return df, tmp / "work", tmp / "out"


def test_table4_rows_and_provenance(table4) -> None:
    df, _, out = table4
    saved = pd.read_csv(out / "table4.csv")
    assert list(saved.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    variants = {v.name for v in TABLES["table4"].variants}
    assert variants <= set(saved["variant"])
    assert "full@report_protocol" in set(saved["variant"])  # the MLRC report's tuning, shown beside ours
    assert set(saved["dataset"]) == {"fs_lost_and_found", "fs_static"}
    assert set(saved["metric"]) == {"ap", "fpr95", "auroc"}
    assert (saved["profile"] == "tiny").all() and saved["value"].between(0, 1).all()
    assert saved["config_hash"].str.len().eq(12).all() and saved["data_fingerprint"].astype(str).str.len().gt(0).all()
    # "w/o ensemble" evaluates the full model's raw output: same checkpoint, no extra training
    ck = saved.drop_duplicates("variant").set_index("variant")["checkpoint"]
    assert ck["no_ensemble"] == ck["full"] and ck["no_uncertainty"] != ck["full"]
    # every table scores the best checkpoint by validation loss, and says so
    assert saved["checkpoint"].map(lambda c: Path(c).name).eq("best.ckpt").all()
    timings = json.loads((out / "timings.json").read_text())
    stages = {k.split(" ")[0] for k in timings if k != "total_s"}
    assert {"world", "backends", "precompute", "train", "score", "ensemble"} <= stages, stages
    covered = sum(v for k, v in timings.items() if k != "total_s")
    print(f"stages cover {covered:.1f} of {timings['total_s']:.1f} s")
    assert 0.85 * timings["total_s"] <= covered <= timings["total_s"]
    # every row has its intervals, the report-protocol rows too (the claims are decided under that protocol as well)
    ci = saved[saved["metric"] == "ap"]
    assert ci["variant"].str.endswith("@report_protocol").any() and ci[["ap_ci_low", "ap_ci_high"]].notna().all().all()
    assert (ci["ap_ci_low"] <= ci["value"] + 1e-9).all() and (ci["value"] <= ci["ap_ci_high"] + 1e-9).all()
    run = Path(ck["full"]).parents[1]
    assert len(list((run / "predictions" / "fs_static").glob("*.png"))) == 4
    assert json.loads((run / "predictions" / "fs_static-timing.json").read_text())["seconds_per_image"] > 0


def test_another_clone_names_the_same_runs_and_splits(table4, tmp_path: Path) -> None:
    """Runs and processed splits are named by content, not file times: a second clone (the world written again, at
    other mtimes) gets the same run folders, split fingerprints, config hashes and values, so a rerun's CSV can be
    compared with the committed one row by row. The data sets' fingerprints hashed names, sizes and mtimes."""
    df, work, _ = table4
    again = run_table("table4", profile="tiny", work_dir=tmp_path / "work", output_dir=tmp_path / "out", device="cpu",
                      wandb_mode="disabled", variants=["full"])
    first = df[df["variant"].isin(set(again["variant"]))].reset_index(drop=True)
    cols = ["variant", "dataset", "metric", "seed", "value", "config_hash", "data_fingerprint"]
    pd.testing.assert_frame_equal(first[cols], again[cols].reset_index(drop=True))
    assert [Path(c).relative_to(work) for c in first["checkpoint"]] == [
        Path(c).relative_to(tmp_path / "work") for c in again["checkpoint"]]
    names = {p.name for p in (tmp_path / "work" / "tiny" / "processed").iterdir()}
    assert names and names <= {p.name for p in (work / "tiny" / "processed").iterdir()}


def test_best_checkpoint_is_scored(table4, tmp_path: Path) -> None:
    """The cached scores are those of best.ckpt (lowest validation loss), not last.ckpt."""
    import shutil

    import torch

    from reprolib.experiments.runner import scored_checkpoint
    from reprolib.experiments.scoring import load_scores, score_split
    from reprolib.training.run import load_trained

    df, work, _ = table4
    run = Path(df.set_index("variant").loc["full", "checkpoint"].iloc[0]).parents[1]
    assert scored_checkpoint(run) == run / "checkpoints" / "best.ckpt"
    best_step = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["global_step"]
    last_step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    cache = next((run / "scores").glob("fs_static-*-best-*.npz"))  # named by the checkpoint and its content hash
    split = next(p for p in (work / "tiny" / "processed").iterdir() if p.name in cache.name)
    model, _ = load_trained(run, which="best")
    fresh = score_split(model, split, size=(64, 128))
    np.testing.assert_array_equal(np.stack(load_scores(cache)["dissimilarity"]), np.stack(fresh["dissimilarity"]))
    if best_step != last_step:  # then the two checkpoints differ and the cache must be best's
        last, _ = load_trained(run, which="last")
        other = score_split(last, split, size=(64, 128))["dissimilarity"]
        assert not np.array_equal(np.stack(other), np.stack(fresh["dissimilarity"]))
    # in the tiny profile best.ckpt and last.ckpt are the same step, so the branch above never runs there: in a copy
    # of the run, best.ckpt gets other weights, and what the runner scores (and caches) must be those
    from reprolib.experiments import pipeline as P
    from reprolib.experiments import runner
    from reprolib.experiments.profiles import get_pipeline_profile

    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("scores", "predictions"))
    best = torch.load(copy / "checkpoints" / "best.ckpt", weights_only=True)
    best["state_dict"] = {k: v * 1.5 if v.is_floating_point() else v for k, v in best["state_dict"].items()}
    torch.save(best, copy / "checkpoints" / "best.ckpt")
    ctx = P.Context(profile=get_pipeline_profile("tiny"), work_dir=tmp_path / "work")
    # a score cache a killed session was writing is removed when the run is scored; one being written now is not
    (copy / "scores").mkdir()
    stale, live = copy / "scores" / ".fs_static-x.npz.0badc0de.tmp", copy / "scores" / ".fs_static-y.npz.1badc0de.tmp"
    stale.write_bytes(b"partial"), live.write_bytes(b"writing")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    scored = runner.scores_for(ctx, copy, None, "fs_static", split)["dissimilarity"]
    assert not stale.exists() and live.exists()
    other_best = score_split(load_trained(copy, which="best")[0], split, size=(64, 128))["dissimilarity"]
    last_scores = score_split(load_trained(copy, which="last")[0], split, size=(64, 128))["dissimilarity"]
    assert not np.array_equal(np.stack(other_best), np.stack(last_scores))  # the two checkpoints now differ
    np.testing.assert_array_equal(np.stack(scored), np.stack(other_best))
    (run / "checkpoints" / "best.ckpt").rename(run / "checkpoints" / "held.ckpt")
    try:  # a run without a validation split has no best.ckpt: its last one is scored
        assert scored_checkpoint(run).name == "last.ckpt"
    finally:
        (run / "checkpoints" / "held.ckpt").rename(run / "checkpoints" / "best.ckpt")


def test_a_selection_that_keeps_its_twins_weights_gets_its_twins_scores(table4, tmp_path: Path, monkeypatch) -> None:
    """A report-selection run finished from its twin's snapshots at the twin's own best step holds the weights the
    twin was scored with, in another file (a weights-only snapshot): it gets the twin's scores, predictions and
    timing without running the network (in the demo's Table 4, 10 of 36 scorings). Other weights are scored."""
    import shutil

    import torch

    from reprolib.experiments import pipeline as P
    from reprolib.experiments import runner
    from reprolib.experiments.profiles import get_pipeline_profile
    from reprolib.experiments.scoring import load_scores

    df, work, _ = table4
    trained = Path(df.set_index("variant").loc["full", "checkpoint"].iloc[0]).parents[1]
    source = tmp_path / "work" / "tiny" / "runs" / trained.name
    shutil.copytree(trained, source)
    source_cache = next((source / "scores").glob("fs_static-*-best-*.npz"))
    split = next(p for p in (work / "tiny" / "processed").iterdir() if p.name in source_cache.name)
    twin = source.with_name("embedded-twin-seed0")
    (twin / "checkpoints").mkdir(parents=True)
    full = torch.load(source / "checkpoints" / "best.ckpt", weights_only=True)
    snapshot = {k: v for k, v in full.items() if k not in ("optimizer_states", "lr_schedulers", "callbacks")}
    torch.save(snapshot, twin / "checkpoints" / "best.ckpt")
    (twin / "done.json").write_text(json.dumps({"selected_from": source.name, "best_step": full["global_step"]}))

    class Scored(Exception):
        """The network ran (the stand-in for score_split)."""

    def stand_in(*args, **kwargs):
        raise Scored

    monkeypatch.setattr(runner, "score_split", stand_in)

    ctx = P.Context(profile=get_pipeline_profile("tiny"), work_dir=tmp_path / "work")
    got = runner.scores_for(ctx, twin, None, "fs_static", split)  # raises Scored if the network ran
    cache = next((twin / "scores").glob("fs_static-*-best-*.npz"))
    assert cache.name != source_cache.name  # keyed by its own file, whose bytes differ
    want = load_scores(source_cache)
    assert got.keys() == want.keys() and all(np.array_equal(np.stack(got[k]), np.stack(want[k])) for k in want)
    pngs = sorted(p.name for p in (source / "predictions" / "fs_static").glob("*.png"))
    assert pngs and pngs == sorted(p.name for p in (twin / "predictions" / "fs_static").glob("*.png"))
    assert all((twin / "predictions" / "fs_static" / n).read_bytes()
               == (source / "predictions" / "fs_static" / n).read_bytes() for n in pngs)
    timing = json.loads((twin / "predictions" / "fs_static-timing.json").read_text())
    assert timing["seconds_per_image"] > 0 and timing["measured_with"].startswith(source.name)
    # another snapshot (other weights): the network runs
    shutil.rmtree(twin / "scores")
    snapshot["state_dict"] = {k: v * 1.5 if v.is_floating_point() else v for k, v in snapshot["state_dict"].items()}
    torch.save(snapshot, twin / "checkpoints" / "best.ckpt")
    with pytest.raises(Scored):
        runner.scores_for(P.Context(profile=get_pipeline_profile("tiny"), work_dir=tmp_path / "work"), twin, None,
                          "fs_static", split)


def test_without_generator_changes_only_the_labels(table4) -> None:
    """'w/o data generator' trains on the full model's processed data; only the label folder differs."""
    df, _, _ = table4
    ck = df.drop_duplicates("variant").set_index("variant")["checkpoint"]
    cfg = {v: json.loads((Path(ck[v]).parents[1] / "config.json").read_text())
           for v in ("full", "no_uncertainty", "no_generator_no_uncertainty")}
    assert cfg["no_generator_no_uncertainty"]["train_split"] == cfg["full"]["train_split"]
    assert cfg["no_generator_no_uncertainty"]["val_split"] == cfg["full"]["val_split"]
    assert cfg["full"]["label_dir"] == cfg["no_uncertainty"]["label_dir"] == "labels_with_void_no_ego"
    assert cfg["no_generator_no_uncertainty"]["label_dir"] == "labels"
    # "w/o uncertainty maps" keeps the SPADE decoder, as the MLRC trainer (prior: False, spade: decoder)
    model = cfg["no_uncertainty"]["model"]
    assert model["uncertainty"] is False and model.get("spade_decoder", True) is True
    # the generator filled void semantics with the combo's segmentation prediction
    gen = json.loads((Path(cfg["full"]["train_split"]).parent.parent / "generated").joinpath(
        "embedded-strong-train", "generator.json").read_text())
    assert gen["void"] and gen["fill_void"] == "segmentation:embedded-strong" and len(gen["fill_void_weights"]) == 16


def test_table3_is_the_fixed_ensemble_at_benchmark_resolution(table4, tmp_path: Path) -> None:
    from reprolib.ensemble import FIXED_ENSEMBLE as FIXED_WEIGHTS

    _, work, _ = table4
    t3 = run_table("table3", profile="tiny", work_dir=work, output_dir=tmp_path, device="cpu", wandb_mode="disabled")
    # the report's checkpoint selection beside ours: the models of Table 4's full and full@report_selection (the
    # fixed ensemble is not trained), nothing trained or selected again
    assert set(t3["variant"]) == {"SynBoost", "SynBoost@report_selection"} and (t3["ensemble"] == "fixed").all()
    ck = t3.drop_duplicates("variant").set_index("variant")["checkpoint"]
    ck4 = table4[0].drop_duplicates("variant").set_index("variant")["checkpoint"]
    assert (ck["SynBoost"], ck["SynBoost@report_selection"]) == (ck4["full"], ck4["full@report_selection"])
    assert ck["SynBoost"] != ck["SynBoost@report_selection"]
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert not any(k.startswith(("train ", "select ")) for k in timings), sorted(timings)
    assert all(json.loads(i)["weights"] == FIXED_WEIGHTS for i in t3["ensemble_info"])
    run = Path(t3["checkpoint"].iloc[0]).parents[1]
    # scored at the benchmark resolution, the resize named (a cache of torch's bilinear, "-benchmark-", is not reused)
    assert list((run / "scores").glob("fs_static-*-benchmark-bicubic-best-*.npz"))
    assert Path(t3["checkpoint"].iloc[0]).name == "best.ckpt"


def test_a_table_cross_fits_and_resamples_whole_sequences(table4, tmp_path: Path, monkeypatch) -> None:
    """The grid rows take their halves and bootstrap clusters from the evaluation split's recording sequences (one
    image each in the embedded world: the even and odd images; here, as if frames came two by two)."""
    from reprolib.experiments import runner
    from reprolib.experiments.scoring import split_sequences

    df, work, _ = table4
    full = df[(df["variant"] == "full") & (df["metric"] == "ap")]
    for info in full["ensemble_info"]:
        halves = json.loads(info)["halves"]
        assert halves["sequences"] == halves["images"] and abs(halves["images"][0] - halves["images"][1]) <= 1
    monkeypatch.setattr(runner, "split_sequences", lambda split: [str(i // 2) for i in range(len(split_sequences(split)))])
    paired = run_table("table4", profile="tiny", work_dir=work, output_dir=tmp_path, device="cpu",
                       wandb_mode="disabled", variants=["full"], report_selection=False)
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert not any(k.startswith(("train ", "score ")) for k in timings)  # the same scores, cross-fitted again
    got = paired[(paired["variant"] == "full") & (paired["metric"] == "ap")].set_index(["dataset", "seed"])
    before = full.set_index(["dataset", "seed"])
    assert len(got) == len(before) == 2 * df["seed"].nunique()
    for info in got["ensemble_info"]:  # 4 images a set in the tiny world: two sequences of two, one a half
        assert json.loads(info)["halves"] == {"images": [2, 2], "sequences": [1, 1]}
    assert not got[["value", "ap_ci_low", "ap_ci_high"]].equals(before[["value", "ap_ci_low", "ap_ci_high"]])


def test_report_selection_rows_can_be_left_out(table4, tmp_path: Path) -> None:
    """run_table(report_selection=False) runs the corrected variants only (in `full` each report-selection run costs
    epochs - 11 more epochs); as with ``variants``, the CSV keeps the left-out rows of an earlier run."""
    df, work, out = table4
    (tmp_path / "table4.csv").write_bytes((out / "table4.csv").read_bytes())
    again = run_table("table4", profile="tiny", work_dir=work, output_dir=tmp_path, device="cpu",
                      wandb_mode="disabled", report_selection=False)
    # full, no_ensemble, no_uncertainty, no_generator_no_uncertainty × the seeds
    assert again.attrs["runs_total"] == 4 * df["seed"].nunique()
    pd.testing.assert_frame_equal(again.sort_values(list(again.columns[:6])).reset_index(drop=True),
                                  df.sort_values(list(df.columns[:6])).reset_index(drop=True), check_dtype=False)
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert not any("@report_selection" in k for k in timings)
    with pytest.raises(ValueError, match="report_selection must be True or False, got 'False'"):
        run_table("table4", profile="tiny", work_dir=work, output_dir=tmp_path, report_selection="False")


def test_epochs_follow_the_report_in_full_and_steps_stay_in_demo() -> None:
    from reprolib.experiments.profiles import get_pipeline_profile

    kw = dict(model={}, train={}, ensemble="grid", seed=0, train_split="a", val_split="b", label_dir="labels",
              wandb_mode="disabled", max_time=None, max_epochs=None, device="cpu")
    assert TABLES["table4"].epochs == TABLES["table3"].epochs == 50
    assert {TABLES[t].epochs for t in ("table5", "table6", "table7", "table8", "figures")} == {25}
    full, demo = get_pipeline_profile("full"), get_pipeline_profile("demo")
    assert full.training_config(**kw, epochs=TABLES["table7"].epochs)["max_epochs"] == 25
    assert full.training_config(**kw, epochs=TABLES["table4"].epochs)["max_epochs"] == 50
    d = demo.training_config(**kw, epochs=25)
    assert d["max_steps"] == demo.training["max_steps"] and "max_epochs" not in d
    assert full.training_config(**{**kw, "max_epochs": 3}, epochs=25)["max_epochs"] == 3  # the user's override wins


def test_figure5_learning_rates_are_a_decade_either_side_of_the_profiles() -> None:
    from reprolib.experiments.profiles import get_pipeline_profile

    kw = dict(model={}, ensemble="grid", seed=0, train_split="a", val_split="b", label_dir="labels",
              wandb_mode="disabled", max_time=None, max_epochs=None, device="cpu")
    rows = {v.name: v for v in TABLES["figures"].variants}
    for profile, base, up, down in (("full", 1e-4, 1e-3, 1e-5), ("demo", 1e-3, 1e-2, 1e-4)):
        p = get_pipeline_profile(profile)
        lrs = {name: p.training_config(**kw, train=rows[name].train) for name in ("vgg16", "lr_x10", "lr_x0.1")}
        # exactly the decimal values (1e-4 × 0.1 is 1.0000000000000001e-05 in floats): full's runs keep their names
        assert [lrs[n]["lr"] for n in ("vgg16", "lr_x10", "lr_x0.1")] == [base, up, down], profile
        assert not any("lr_scale" in cfg for cfg in lrs.values())


def test_rerun_reuses_finished_work(table4, capsys, monkeypatch) -> None:
    from reprolib.precompute import compute

    df, work, out = table4
    keys = []
    key = compute.cache_key
    monkeypatch.setattr(compute, "cache_key", lambda *a, **k: keys.append(1) or key(*a, **k))
    capsys.readouterr()
    again = run_table("table4", profile="tiny", work_dir=work, output_dir=out, device="cpu", wandb_mode="disabled")
    # each split (and the backends) is found done once per call, not again for every variant and seed: that
    # took 0.2-0.4 s a time (backends loaded, weights hashed, V's VGG19 built for the cache key)
    entered = [line.split(" …")[0] for line in capsys.readouterr().out.splitlines()
               if line.startswith("[reprolib] ") and line.endswith(" …")]
    counts = {s: entered.count(s) for s in entered if s.split(" ")[1] in ("backends", "precompute")}
    assert counts and set(counts.values()) == {1}, counts
    assert len(keys) == 4, len(keys)  # train, val, FS L&F, FS Static: one cache key each
    pd.testing.assert_frame_equal(df.drop(columns="commit"), again.drop(columns="commit"))
    timings = json.loads((out / "timings.json").read_text())
    # a finished run is not entered again at all: no train (or select) stage, whatever it would cost (retraining a
    # tiny run takes well under the 5 s this used to allow)
    assert not any(k.startswith(("train ", "select ")) for k in timings), sorted(timings)


def test_finished_backends_of_other_settings_are_not_reused(table4, tmp_path: Path, monkeypatch) -> None:
    """A profile whose embedded backends' settings were edited after they trained stops with the folder and the
    setting named, before any work: they were reused as they were (the pipeline skipped the trainer's own check
    for finished backends), so every row came from the old backends under the new settings."""
    import dataclasses

    from reprolib.experiments import profiles

    _, work, _ = table4
    tiny = profiles.PROFILES["tiny"]
    edited = dataclasses.replace(tiny, backend_training={**tiny.backend_training, "max_steps": (11, 10)})
    monkeypatch.setitem(profiles.PROFILES, "tiny", edited)
    before = sorted(p.name for p in (work / "tiny").rglob("*"))
    with pytest.raises(ReprolibDataError, match=r"backends.strong.*steps: \[10, 10\] → \[11, 10\]"):
        run_table("table4", profile="tiny", work_dir=work, output_dir=tmp_path / "out", device="cpu",
                  wandb_mode="disabled")
    assert sorted(p.name for p in (work / "tiny").rglob("*")) == before  # nothing trained, generated or removed


def test_some_variants_keep_the_other_variants_rows(table4, tmp_path: Path) -> None:
    # run_table(variants=[...]) reruns those variants; the table's other rows stay in its CSV
    import shutil

    df, work, out = table4
    shutil.copy(out / "table4.csv", tmp_path / "table4.csv")
    some = run_table("table4", profile="tiny", work_dir=work, output_dir=tmp_path, device="cpu", wandb_mode="disabled",
                     variants=["no_ensemble"])
    saved = load_results(tmp_path / "table4.csv")
    assert set(some["variant"]) == set(df["variant"]) == set(saved["variant"]) and len(saved) == len(df)
    # every row, the rerun variant's and the others', is what the first run wrote (the rerun's rows come last)
    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.drop(columns="commit")
        return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)

    pd.testing.assert_frame_equal(rows(saved), rows(df))


def test_rows_kept_from_a_run_of_other_settings_are_left_out(table4, tmp_path: Path, capsys) -> None:
    """Rerunning some variants with another setting (here the evaluation resolution) leaves out the other variants'
    rows of the earlier run: they sat in the table beside the new rows, made under other settings, and the claims
    compared them. Each is named; the rows of the variants run are those of the new settings."""
    import shutil

    df, work, out = table4
    shutil.copy(out / "table4.csv", tmp_path / "table4.csv")
    some = run_table("table4", profile="tiny", work_dir=work, output_dir=tmp_path, device="cpu", wandb_mode="disabled",
                     variants=["no_ensemble"], eval_resolution="benchmark")
    printed = capsys.readouterr().out
    assert "rows of an earlier run left out" in printed and "full seed 0" in printed and "no_uncertainty" in printed
    saved = load_results(tmp_path / "table4.csv")
    assert set(saved["variant"].map(lambda v: v.split("@")[0])) == {"no_ensemble"} and len(saved) == len(some)
    assert set(saved["config_hash"]).isdisjoint(df["config_hash"])  # other settings: other hashes
    assert len(saved) < len(df)


def test_identity_columns_read_as_text(tmp_path: Path) -> None:
    """A commit or hash of digits only (12 hex digits are all decimal about once in 280) reads back as the text it
    is: as a number it lost its leading zero and compared unequal to the hash computed again."""
    from reprolib.experiments.results import result_rows, save_results

    rows = result_rows(table="t", variant="v", dataset="d", metrics={"ap": 0.5}, seed=0, profile="tiny",
                       config={}, commit="012345678901", data_fingerprint="000000000123")
    save_results([{**r, "config_hash": "001234567890"} for r in rows], tmp_path / "t.csv")
    back = load_results(tmp_path / "t.csv").iloc[0]
    assert (back["commit"], back["config_hash"], back["data_fingerprint"]) == (
        "012345678901", "001234567890", "000000000123")


def test_report_selection_has_its_own_model_selected_on_fs_laf(table4, tmp_path: Path) -> None:
    import shutil

    from reprolib.experiments.tables import Variant

    df, work, out = table4
    names = list(dict.fromkeys(df["variant"]))
    # right after full's rows: its own (cross-fitted grid) row, and the one with both of the report's procedures
    assert names[:4] == ["full", "full@report_protocol", "full@report_selection", "full@report_selection@report_protocol"]
    ck = df.drop_duplicates("variant").set_index("variant")["checkpoint"]
    assert ck["full@report_selection"] == ck["full@report_selection@report_protocol"] != ck["full"]
    run, full = (Path(ck[v]).parents[1] for v in ("full@report_selection", "full"))
    cfg, full_cfg = (json.loads((r / "config.json").read_text()) for r in (run, full))
    # the same training data and model; validated (best.ckpt) on FS L&F's labels/, plateau on FS Static's labels/
    assert {k: cfg[k] for k in ("train_split", "label_dir", "model", "ensemble")} == {
        k: full_cfg[k] for k in ("train_split", "label_dir", "model", "ensemble")}
    laf = next((run / "scores").glob("fs_lost_and_found-*-best-*.npz")).name
    static = next((run / "scores").glob("fs_static-*-best-*.npz")).name
    assert Path(cfg["val_split"]).name in laf and Path(cfg["plateau_split"]).name in static
    assert cfg["val_label_dir"] == cfg["plateau_label_dir"] == "labels"
    assert cfg["val_loss"] == "per_image" and full_cfg["val_loss"] == "pooled"  # the original's batch-1 loaders
    assert full_cfg["plateau_split"] is None and full_cfg["val_split"] != cfg["val_split"]
    log = (run / "csv" / "session-0" / "metrics.csv").read_text()
    assert "plateau_val/loss" in log and "plateau_val/loss" not in (full / "csv" / "session-0" / "metrics.csv").read_text()
    # the scheduler cannot act in 4 steps validated every 2 (patience 10): selected from full's snapshots, not trained
    assert json.loads((run / "done.json").read_text())["selected_from"] == full.name
    stages = [r["stage"] for r in read_log(work)]  # every stage that did work, over the module's reruns too
    assert "select full@report_selection seed 0" in stages and "train full@report_selection seed 0" not in stages
    assert Variant("full").training_key() == ((), (), True, None, None)  # other variants' config hashes unchanged
    # rerunning only this variant keeps full's rows (its name starts with "full@" but it is another variant)
    shutil.copy(out / "table4.csv", tmp_path / "table4.csv")
    run_table("table4", profile="tiny", work_dir=work, output_dir=tmp_path, device="cpu", wandb_mode="disabled",
              variants=["full@report_selection"])
    saved = load_results(tmp_path / "table4.csv")
    assert len(saved) == len(df) and set(saved["variant"]) == set(df["variant"])


def test_report_selection_forks_from_full_where_steps_follow_the_shared_validations(tmp_path: Path, monkeypatch) -> None:
    # patience 0: both runs share the weights of their first validation (step 2) only; 4 steps follow it there
    from dataclasses import replace

    import reprolib.training.run as training_run
    from reprolib.experiments.profiles import PROFILES

    tiny = PROFILES["tiny"]
    monkeypatch.setitem(PROFILES, "tinyfork", replace(tiny, name="tinyfork", training={
        **tiny.training, "max_steps": 6, "val_every_n_steps": 2, "patience": 0}))
    # what each training started beside: full seed 0's snapshots must be used up (forked) before full seed 1 trains,
    # not kept until the report-selection runs' turn after every seed of full (in `full`, ~1 GB a seed)
    train, started = training_run.train, []

    def recording_train(cfg, run_dir, **kwargs):
        runs = Path(run_dir).parent
        started.append((Path(run_dir).name, sorted(p.parents[1].name for p in runs.glob("*/checkpoints/validation"))))
        return train(cfg, run_dir=run_dir, **kwargs)

    monkeypatch.setattr(training_run, "train", recording_train)
    out = tmp_path / "out"
    df = run_table("table4", profile="tinyfork", work_dir=tmp_path / "work", output_dir=out, device="cpu",
                   wandb_mode="disabled", variants=["full", "full@report_selection"], seeds=[0, 1])
    ck = df[df["seed"] == 0].drop_duplicates("variant").set_index("variant")["checkpoint"]
    run, full = (Path(ck[v]).parents[1] for v in ("full@report_selection", "full"))
    full1 = Path(df[(df["seed"] == 1) & (df["variant"] == "full")]["checkpoint"].iloc[0]).parents[1]
    assert [name for name, _ in started][:2] == [full.name, full1.name]
    assert started[1][1] == []  # full seed 1 trained after seed 0's twin had forked
    assert len(started) == 4  # and each report-selection run trained once, at its own turn, from its fork
    order = df[df["variant"].isin(["full", "full@report_selection"])].drop_duplicates(["variant", "seed"])
    assert list(order[["variant", "seed"]].itertuples(index=False, name=None)) == [
        ("full", 0), ("full", 1), ("full@report_selection", 0), ("full@report_selection", 1)]  # rows in table order
    assert json.loads((run / "config.json").read_text())["trajectory_snapshots"] is None
    assert json.loads((full / "config.json").read_text())["trajectory_snapshots"] is True  # asked by the runner
    timings = json.loads((out / "timings.json").read_text())
    # selected up to the fork, trained after it: steps 3 to 6 in a second logging session
    assert {"select full@report_selection seed 0", "train full@report_selection seed 0"} <= set(timings)
    assert sorted(p.name for p in (run / "csv").iterdir()) == ["session-0", "session-1"]
    assert json.loads((run / "done.json").read_text())["global_step"] == 6
    assert not (full / "checkpoints" / "validation").exists()  # used up: the fork is the run's own now


def test_a_kill_between_the_fork_and_the_snapshots_removal_still_removes_them(tmp_path: Path, monkeypatch) -> None:
    # the fork writes the report-selection run's last.ckpt, then removes its twin's snapshots (in `full` ~1 GB a
    # seed, in every later session's output); a kill between the two left them there for good: the run, started,
    # never forks again, and nothing else removed them
    from dataclasses import replace

    import reprolib.experiments.runner as runner
    from reprolib.experiments.profiles import PROFILES

    tiny = PROFILES["tiny"]
    monkeypatch.setitem(PROFILES, "tinyfork", replace(tiny, name="tinyfork", training={
        **tiny.training, "max_steps": 6, "val_every_n_steps": 2, "patience": 0}))

    class Killed(BaseException):
        pass

    def killed(path, *args, **kwargs):  # the process dies where the snapshots were to be removed
        raise Killed(path)

    kw = dict(profile="tinyfork", work_dir=tmp_path / "work", output_dir=tmp_path / "out", device="cpu",
              wandb_mode="disabled", variants=["full", "full@report_selection"])
    with monkeypatch.context() as m:
        m.setattr(runner.shutil, "rmtree", killed)
        with pytest.raises(Killed) as kill:
            run_table("table4", **kw)
    runs = tmp_path / "work" / "tinyfork" / "runs"
    assert Path(str(kill.value)).parts[-2:] == ("checkpoints", "validation")  # the state such a kill leaves:
    assert len(list(runs.glob("*/checkpoints/last.ckpt"))) == 2 and list(runs.glob("*/checkpoints/validation"))
    df = run_table("table4", **kw)
    assert set(df["variant"]) >= {"full", "full@report_selection"}
    assert not list(runs.glob("*/checkpoints/validation"))


def test_config_hash_tells_apart_what_trains_other_weights() -> None:
    # in `full`, Table 4's full model trains 50 epochs and Table 7's 25: other runs, other config hashes
    from types import SimpleNamespace

    from reprolib.experiments.profiles import get_pipeline_profile
    from reprolib.experiments.results import config_hash
    from reprolib.experiments.runner import _config

    def h(profile: str, table: str, **ctx) -> str:
        c = SimpleNamespace(profile=get_pipeline_profile(profile), data=SimpleNamespace(embedded=True),
                            **{"max_epochs": None, "precision": "32-true", "eval_resolution": None, **ctx})
        return config_hash(_config(c, TABLES[table].variants[0], "original", 0, TABLES[table].epochs))

    assert h("full", "table4") != h("full", "table7")
    assert h("demo", "table4") == h("demo", "table7")  # a step budget: one and the same run
    assert h("full", "table4") != h("full", "table4", precision="16-mixed") != h("full", "table4", max_epochs=3)


def test_notebook_runs_under_papermill(table4, tmp_path: Path) -> None:
    import papermill as pm

    _, work, _ = table4
    out_nb = tmp_path / "table4.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "table4.ipynb"), str(out_nb), kernel_name="python3",
                        parameters={"profile": "tiny", "work_dir": str(work), "output_dir": str(tmp_path / "res"),
                                    "device": "cpu", "wandb_mode": "disabled"},
                        request_save_on_cell_execute=True, progress_bar=False, cwd=str(ROOT))
    nb = nbformat.read(out_nb, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert (tmp_path / "res" / "table4.csv").is_file() and (tmp_path / "res" / "table4.png").is_file()
    html = "".join(str(o.get("data", {}).get("text/html", "")) for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "fs_lost_and_found" in html  # the comparison table was displayed
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert pngs >= 2  # the table's figure and the world's gallery, inline


def test_committed_notebooks_have_no_outputs_and_a_parameters_cell() -> None:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table3", "table5", "table6", "table7", "table8", "figures", "figure3"])
def test_every_other_notebook_runs_under_papermill(name: str, table4, tmp_path: Path) -> None:
    """Each table notebook, smallest parameters: one seed, tiny profile, sharing the tiny world and backends."""
    import papermill as pm

    _, work, _ = table4
    out = tmp_path / name
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                        kernel_name="python3", parameters={"profile": "tiny", "work_dir": str(work), "output_dir": str(out),
                                                           "device": "cpu", "wandb_mode": "disabled"},
                        progress_bar=False, cwd=str(ROOT))
    rows = pd.read_csv(out / f"{name}.csv")
    assert {v.name for v in TABLES[name].variants} <= set(rows["variant"])
    assert (out / f"{name}.png").is_file()


def test_scoring_killed_while_writing_predictions_writes_them_on_rerun(tmp_path: Path, monkeypatch) -> None:
    """The score cache marks a run's scoring done, so it is written last: a run killed while writing the prediction
    PNGs scores again and writes all of them and the timing. With the cache written first, the rerun took the
    cache and left the predictions cut short and the timing missing for good."""
    import sys

    from reprolib.experiments import pipeline as P
    from reprolib.experiments import runner
    from reprolib.experiments.profiles import PipelineProfile, get_pipeline_profile
    from reprolib.experiments.scoring import write_predictions
    from reprolib.training.run import train

    sys.path.insert(0, str(Path(__file__).parent))
    from _make_processed import make_processed_split

    size = (32, 64)
    split = make_processed_split(tmp_path / "eval", 3, size=size)
    run = train({"train_split": str(split), "val_split": None, "label_dir": "labels", "size": list(size),
                 "max_steps": 1, "batch_size": 2, "model": {"width": 0.0625, "pretrained": False},
                 "wandb_mode": "disabled", "seed": 0}, tmp_path / "run")
    tiny = get_pipeline_profile("tiny")
    ctx = P.Context(profile=PipelineProfile(**{**tiny.__dict__, "size": size}), work_dir=tmp_path / "work")

    class Killed(BaseException):
        pass

    def one_then_die(maps, folder, limit=None):  # noqa: ANN001, ANN202
        write_predictions(maps[:1], folder)
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(runner, "write_predictions", one_then_die)
        with pytest.raises(Killed):
            runner.scores_for(ctx, run, None, "fs_static", split)
    scores = runner.scores_for(ctx, run, None, "fs_static", split)  # the rerun
    predictions = sorted((run / "predictions" / "fs_static").glob("*.png"))
    assert [p.name for p in predictions] == ["0000.png", "0001.png", "0002.png"]
    assert len(scores["dissimilarity"]) == 3
    assert json.loads((run / "predictions" / "fs_static-timing.json").read_text())["seconds_per_image"] > 0


def test_status_says_in_progress_until_the_table_ends(tmp_path: Path, monkeypatch) -> None:
    """The CSV is saved after every run, so a run killed mid-table leaves part of the rows; its status.json then
    says "in_progress" (what `make` looks at), not the "complete" of the table's previous run, as it used to.
    A table that ends writes its final status, the same keys as before."""
    from reprolib.experiments import runner

    out = tmp_path / "out"
    kw = dict(profile="tiny", work_dir=tmp_path / "work", output_dir=out, device="cpu", wandb_mode="disabled")
    monkeypatch.setattr(runner.P, "prepare_data", lambda ctx, data_root: None)
    row = dict.fromkeys(RESULT_COLUMNS, "x")
    monkeypatch.setattr(runner, "_variant_rows", lambda *a: [row])
    monkeypatch.setattr(runner, "_select_report_twins", lambda *a: None)  # no run really finished
    run_table("table4", **kw)
    final = json.loads((out / "status.json").read_text())
    assert final["complete"] and sorted(final) == ["complete", "profile", "runs_finished", "runs_missing",
                                                   "runs_total", "stopped_before", "table"]
    assert final["profile"] == "tiny"  # what kaggle-pull checks: demo and full pushes share one kernel

    class Killed(BaseException):
        pass

    calls = []

    def second_run_killed(*a):  # noqa: ANN002, ANN202
        calls.append(a)
        if len(calls) == 2:
            assert json.loads((out / "status.json").read_text())["in_progress"] is True  # while it runs
            raise Killed
        return [row]

    monkeypatch.setattr(runner, "_variant_rows", second_run_killed)
    with pytest.raises(Killed):
        run_table("table4", **kw)
    status = json.loads((out / "status.json").read_text())
    assert status["in_progress"] is True and status["complete"] is False and status["profile"] == "tiny"


@pytest.mark.parametrize(("device", "accelerator"), [("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda")])
def test_embedded_backends_train_on_the_runs_device(device: str, accelerator: str, tmp_path: Path,
                                                    monkeypatch) -> None:
    import reprolib.training.embedded_backends as EB
    from reprolib.experiments import pipeline as P
    from reprolib.experiments.profiles import PROFILES

    calls = []
    monkeypatch.setattr(EB, "train_embedded_backends", lambda *a, **kw: calls.append(kw))
    ctx = P.Context(profile=PROFILES["tiny"], work_dir=tmp_path / "tiny", device=device,
                    data=P.DataRoots(root=tmp_path / "world", embedded=True))
    P._train_embedded(ctx, "embedded")
    assert calls and {kw["accelerator"] for kw in calls} == {accelerator}
