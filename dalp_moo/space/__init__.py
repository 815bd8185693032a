"""Search space: integer genome <-> U-Net encoder architecture, canonical IDs, repair.

The space implements :class:`dalp_moo.application.SearchSpaceProtocol`; repair takes a
parameter counter (:class:`dalp_moo.model.ParamCounter`) instead of importing the model.
"""

from dalp_moo.space.genome import (
    ACTIVATIONS,
    BLOCKS,
    Architecture,
    SearchSpace,
    UnitSpec,
)
from dalp_moo.space.repair import fit_cap

__all__ = ["ACTIVATIONS", "BLOCKS", "Architecture", "SearchSpace", "UnitSpec", "fit_cap"]
