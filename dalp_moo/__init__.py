"""dalp_moo: hardware-aware multi-objective NAS with deployment-aligned low-precision training.

Pipeline (one sub-package each): ``space`` (genome -> architecture) -> ``model`` (architecture ->
torch module) -> ``precision`` (FP16 deployment numerics) -> ``training`` -> ``backends``
(deployment: accuracy on device, latency, energy) -> ``evaluation`` (one candidate -> objectives)
-> ``search`` (pymoo algorithms, driver) -> ``results`` (run folder, Pareto front, plots).
"""

from dalp_moo.errors import ConfigError, DalpError, DataError
from dalp_moo.log import logger

__version__ = "0.1.0"

__all__ = ["ConfigError", "DalpError", "DataError", "logger", "__version__"]
