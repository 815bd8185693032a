"""Search: pymoo operators for the integer genome, algorithms (NSGA-II, random baseline) and the
checkpointing driver."""

from dalp_moo.search.algorithms import RandomSearch, make_algorithm
from dalp_moo.search.driver import SearchOutcome, run_search

__all__ = ["RandomSearch", "SearchOutcome", "make_algorithm", "run_search"]
