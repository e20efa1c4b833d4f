"""Fishyscapes metrics (AP, FPR at 95 % TPR, AUROC; exact and streaming), SMIYC component metrics,
bootstrap intervals and seed aggregation."""

from reprolib.metrics.components import component_metrics
from reprolib.metrics.curves import curve_metrics, metrics_from_histograms
from reprolib.metrics.pixel import anomaly_metrics
from reprolib.metrics.streaming import AnomalyMetrics
from reprolib.metrics.uncertainty import aggregate_seeds, bootstrap_ci, bootstrap_intervals, paired_comparison

__all__ = ["AnomalyMetrics", "aggregate_seeds", "anomaly_metrics", "bootstrap_ci", "bootstrap_intervals",
           "component_metrics", "curve_metrics", "metrics_from_histograms", "paired_comparison"]
