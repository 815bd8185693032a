"""Search space: integer genome <-> U-Net encoder architecture, canonical IDs, repair."""

from dalp_moo.space.genome import (
    ACTIVATIONS,
    BLOCKS,
    Architecture,
    SearchSpace,
    UnitSpec,
)
from dalp_moo.space.repair import count_params, repair

__all__ = ["ACTIVATIONS", "BLOCKS", "Architecture", "SearchSpace", "UnitSpec", "count_params", "repair"]
