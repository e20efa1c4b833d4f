"""reprolib: reproducing SynBoost (Di Biase et al., CVPR 2021) — data, models, maps, ensemble, metrics."""

__version__ = "0.1.0"
