"""Results: run folder layout, Pareto front, hypervolume, plots."""

from dalp_moo.results.pareto import feasible, hypervolume, pareto_front, plot_front
from dalp_moo.results.run_folder import RunFolder

__all__ = ["RunFolder", "feasible", "hypervolume", "pareto_front", "plot_front"]
