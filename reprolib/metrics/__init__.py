"""Fishyscapes metrics: AP, FPR at 95 % TPR and AUROC over every valid pixel (exact and streaming)."""

from reprolib.metrics.pixel import AnomalyMetrics, anomaly_metrics, curve_metrics, metrics_from_histograms

__all__ = ["AnomalyMetrics", "anomaly_metrics", "curve_metrics", "metrics_from_histograms"]
