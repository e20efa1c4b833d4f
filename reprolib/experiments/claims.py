"""The claims of the paper and of the MLRC report, and a verdict for each computed from tidy results.

The claims themselves are data, in :mod:`reprolib.experiments.claim_list` (:class:`Claim`, :data:`CLAIMS`,
:data:`NOT_TESTED`, the cited report text); they are re-exported here, the one place callers import from.
This module computes their verdicts.

:func:`claim_verdicts` turns a results frame (every ``results/<t>/<t>.csv`` concatenated) into one row per
claim × dataset: our effect ``a − b`` in percentage points with a 95 % interval, the report's own effect
(from :mod:`reprolib.experiments.reference`, never retyped), and a verdict — ``holds``, ``contradicted``,
``inconclusive`` or ``not run`` — that is computed, never typed.

The interval combines two independent sources of uncertainty, in quadrature:

* **seeds** (when ≥ 2 seeds pair up): the paired differences over seeds, a t interval
  (mean and std from :func:`reprolib.metrics.paired_comparison`);
* **images**: every run carries a 95 % per-image bootstrap interval of AP and FPR95 (``ap_ci_low`` …, from
  :func:`reprolib.metrics.bootstrap_ci`). Each is turned into a standard error (width / 2z); a run's
  difference gets ``sqrt(se_a² + se_b²)`` (conservative: ``a`` and ``b`` are scored on the same images, so
  their errors are positively correlated and partly cancel), and the seeds' errors are averaged, not
  divided by √n (conservative: every seed is scored on the same images).

``protocol="report"`` decides the same comparison between the variants' rows under the MLRC report's protocol
(:func:`row_under`: each variant's report-selection twin, on its ``@report_protocol`` row for a grid ensemble), so
the report shows where a verdict depends on the protocol.

Verdicts: for *higher*/*lower*, ``holds`` when the whole interval lies on the stated side of zero,
``contradicted`` when it lies wholly on the other side, ``inconclusive`` when it contains zero (or no
interval can be formed: one seed without per-image intervals). For *same*, ``holds`` when the interval lies
inside ``±margin``, ``contradicted`` when it lies wholly outside, ``inconclusive`` otherwise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from reprolib.experiments.claim_list import (
    CLAIMS,
    DATASETS,
    EXPECT,
    METRICS,
    NOT_TESTED,
    REPORT_NAME,
    REPORT_SHA256,
    Claim,
    NotTested,
    report_path,
    report_sha256,
)
from reprolib.experiments.reference import reference_numbers
from reprolib.experiments.results import RESULT_COLUMNS, load_results, result_tables
from reprolib.experiments.tables import REPORT_PROTOCOL, REPORT_SELECTION, TABLES
from reprolib.metrics import paired_comparison

__all__ = ["CLAIMS", "DATASETS", "EXPECT", "LEVEL", "METRICS", "NOT_TESTED", "REPORT_NAME", "REPORT_SHA256", "VERDICTS",
           "PROTOCOLS", "Claim", "NotTested", "claim_verdicts", "decide", "effect_interval", "load_all_results",
           "report_path", "report_sha256", "row_under"]

VERDICTS = ("holds", "contradicted", "inconclusive", "not run")
LEVEL = 0.95
#: "ours": the claim's own rows (our checkpoint selection, cross-fitted grid); "report": the same variants under the
#: MLRC report's protocol (checkpoint selected on FS L&F, grid weights tuned on the reported set), the one behind its
#: numbers
PROTOCOLS = ("ours", "report")


def row_under(protocol: str, table: str, variant: str) -> str:
    """The result row holding ``variant`` of ``table`` under ``protocol``: under the report's, its report-selection
    twin, on its ``@report_protocol`` row when it is a grid ensemble (the report's grid tuning)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "ours":
        return variant
    found = {v.name: v for v in TABLES[table].variants}
    twin = variant + REPORT_SELECTION
    if twin not in found:
        raise ValueError(f"{table} has no {twin!r} row: {variant!r} has no report-selection twin")
    return twin + REPORT_PROTOCOL if found[variant].ensemble == "grid" else twin

_KEY = ["table", "variant", "dataset", "metric"]


def _runs(groups: dict[tuple, pd.DataFrame], table: str, variant: str, dataset: str, metric: str) -> pd.DataFrame:
    """One row per (profile, seed): value and the run's per-image interval of ``metric`` (NaN when absent)."""
    sel = groups.get((table, variant, dataset, metric))
    if sel is None:
        return pd.DataFrame(columns=["value", "lo", "hi"],
                            index=pd.MultiIndex.from_tuples([], names=["profile", "seed"]))
    lo, hi = f"{metric}_ci_low", f"{metric}_ci_high"
    out = pd.DataFrame({
        "profile": sel["profile"].astype(str), "seed": sel["seed"].astype(int), "value": sel["value"].astype(float),
        "lo": sel[lo].astype(float) if lo in sel else np.nan, "hi": sel[hi].astype(float) if hi in sel else np.nan,
    })
    if out.duplicated(["profile", "seed"]).any():
        raise ValueError(f"{table}/{variant}/{dataset}/{metric}: more than one result per profile and seed")
    return out.set_index(["profile", "seed"])


@functools.cache
def _reference() -> dict[tuple[str, str, str, str, str], float]:
    """(source, table, row, dataset, metric) → mean, from :func:`reference_numbers` (built once)."""
    ref = reference_numbers()
    keys = zip(ref["source"], ref["table"], ref["row"], ref["dataset"], ref["metric"], strict=True)
    return {k: float(m) for k, m in zip(keys, ref["mean"], strict=True)}


def _reference_effect(claim: Claim, dataset: str, source: str) -> float:
    """a − b in the report's (or the paper's) own numbers, in percentage points; NaN when either is missing."""
    ref = _reference()
    a = ref.get((source, claim.table_of_a, claim.ref_a or claim.a, dataset, claim.metric), float("nan"))
    b = ref.get((source, claim.table, claim.ref_b or claim.b, dataset, claim.metric), float("nan"))
    return a - b


def decide(expect: str, low: float, high: float, margin: float | None = None) -> str:
    """The verdict from an interval of a − b (see the module docstring)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if expect == "same":
        if margin is None:
            raise ValueError("expect='same' needs a margin")
        if -margin < low and high < margin:
            return "holds"
        return "contradicted" if (low > margin or high < -margin) else "inconclusive"
    sign = 1.0 if expect == "higher" else -1.0
    lo, hi = sorted((sign * low, sign * high))
    if lo > 0:
        return "holds"
    return "contradicted" if hi < 0 else "inconclusive"


def effect_interval(a: pd.DataFrame, b: pd.DataFrame, level: float = LEVEL) -> dict[str, float]:
    """Paired effect a − b (percentage points) over the common (profile, seed) runs, with its interval."""
    # lazy: scipy.stats adds 0.8 s at import (python -X importtime), and every table notebook imports
    # reprolib.report (so this module) for comparison_table without computing a verdict
    from scipy import stats

    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    n = len(common)
    d = (a["value"] - b["value"]).to_numpy() * 100
    z = float(stats.norm.ppf(0.5 + level / 2))
    seed_half = float("nan")
    if n >= 2:
        pc = paired_comparison(a["value"].to_numpy() * 100, b["value"].to_numpy() * 100)
        seed_half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * pc["std_diff"] / math.sqrt(n)
    # per-run standard errors from the per-image bootstrap intervals (width / 2z), in percentage points
    se_a = (a["hi"] - a["lo"]).to_numpy() * 100 / (2 * z)
    se_b = (b["hi"] - b["lo"]).to_numpy() * 100 / (2 * z)
    image_half = z * float(np.mean(np.sqrt(se_a**2 + se_b**2))) if n and np.isfinite(se_a).all() and \
        np.isfinite(se_b).all() else float("nan")
    parts = [h for h in (seed_half, image_half) if math.isfinite(h)]
    half = math.sqrt(sum(h * h for h in parts)) if parts else float("nan")
    effect = float(d.mean()) if n else float("nan")
    return {"effect": effect, "ci_low": effect - half, "ci_high": effect + half, "seed_half": seed_half,
            "image_half": image_half, "n_seeds": n}


def claim_verdicts(results: pd.DataFrame, claims: Sequence[Claim] = CLAIMS, level: float = LEVEL,
                   protocol: str = "ours") -> pd.DataFrame:
    """One row per claim × dataset: the report's and the paper's effect, ours with its interval, the verdict.

    ``results``: tidy rows of any number of tables (``table`` column), as :func:`load_results` reads them.
    Effects are ``a − b`` in percentage points. A claim whose rows are missing is ``not run``. ``protocol``: whose
    rows decide (:data:`PROTOCOLS`, :func:`row_under`); the ``a``/``b`` columns name the rows used.
    """
    results = results.reindex(columns=list(dict.fromkeys([*RESULT_COLUMNS, *results.columns])))  # empty → no runs
    groups = {tuple(k): g for k, g in results.groupby(_KEY, sort=False)}
    rows = []
    for claim in claims:
        for dataset in claim.datasets:
            row_a, row_b = row_under(protocol, claim.table_of_a, claim.a), row_under(protocol, claim.table, claim.b)
            a = _runs(groups, claim.table_of_a, row_a, dataset, claim.metric)
            b = _runs(groups, claim.table, row_b, dataset, claim.metric)
            common = a.index.intersection(b.index)
            row = {
                "claim": claim.id, "statement": claim.shown, "origin": claim.origin, "protocol": protocol,
                "source": ", ".join(map(str, claim.source)), "table": claim.table, "a": row_a, "b": row_b,
                "dataset": dataset, "metric": claim.metric, "expect": claim.expect, "margin": claim.margin,
                "report_effect": _reference_effect(claim, dataset, "report"),
                "paper_effect": _reference_effect(claim, dataset, "paper"),
            }
            if len(common) == 0:
                missing = [f"{t}/{v}" for t, v, f in ((claim.table_of_a, row_a, a), (claim.table, row_b, b)) if f.empty]
                reason = "no results for " + ", ".join(missing) if missing else "no run of a and b shares a seed"
                row.update(effect=float("nan"), ci_low=float("nan"), ci_high=float("nan"), seed_half=float("nan"),
                           image_half=float("nan"), n_seeds=0, profile="", verdict="not run", reason=reason)
            else:
                # one profile per verdict (never average demo with full): full if present, else the best-seeded
                profiles = pd.Series(common.get_level_values("profile")).value_counts()
                profile = "full" if "full" in profiles else str(sorted(profiles.index, key=lambda p: (-profiles[p], p))[0])
                stats_ = effect_interval(a.loc[[profile]], b.loc[[profile]], level)
                verdict = decide(claim.expect, stats_["ci_low"], stats_["ci_high"], claim.margin)
                notes = [] if math.isfinite(stats_["ci_low"]) else ["no interval: one seed and no per-image intervals"]
                if len(profiles) > 1:
                    notes.append("profiles not used: " + ", ".join(sorted(set(profiles.index) - {profile})))
                row.update(**stats_, profile=profile, verdict=verdict, reason="; ".join(notes))
            rows.append(row)
    return pd.DataFrame(rows)


def load_all_results(results_dir: str | Path) -> pd.DataFrame:
    """Every ``results/<t>/<t>.csv`` in one frame (empty, with the result columns, when there is none)."""
    frames = [load_results(csv) for csv in result_tables(results_dir)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
