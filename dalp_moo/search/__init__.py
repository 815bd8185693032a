"""Search: pymoo operators for integer genomes (taking the application's space), algorithms
(NSGA-II, random baseline) and the driver (run folder lock, resume by replaying the journal)."""

from dalp_moo.search.algorithms import FACTORIES, RandomSearch, make_algorithm
from dalp_moo.search.driver import SearchOutcome, run_search
from dalp_moo.search.operators import integer_operators

__all__ = ["FACTORIES", "RandomSearch", "SearchOutcome", "integer_operators", "make_algorithm", "run_search"]
