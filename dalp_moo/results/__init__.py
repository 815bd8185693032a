"""Results: run folder layout, Pareto front, hypervolume, summary, plots (any application)."""

from dalp_moo.results.pareto import feasible, hypervolume, pareto_front, plot_front
from dalp_moo.results.run_folder import RunFolder
from dalp_moo.results.summary import Scoring, summarise

__all__ = ["RunFolder", "Scoring", "feasible", "hypervolume", "pareto_front", "plot_front", "summarise"]
