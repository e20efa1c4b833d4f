"""Ensembles of the network's output with the uncertainty maps: grid search and learned end to end."""

from reprolib.ensemble.grid_search import (
    FIXED_ENSEMBLE,
    ORDER,
    GridSearchResult,
    candidate_weights,
    combine,
    grid_search,
)
from reprolib.ensemble.learned import LearnedEnsemble

__all__ = ["FIXED_ENSEMBLE", "ORDER", "GridSearchResult", "LearnedEnsemble", "candidate_weights", "combine",
           "grid_search"]
