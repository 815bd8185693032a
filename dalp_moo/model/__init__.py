"""Architecture -> torch module: blocks of the search space, the U-Net assembly and exact
parameter counting."""

from dalp_moo.model.params import ParamCounter, count_params
from dalp_moo.model.unet import InputNorm, UNet, build_model, count_trainable

__all__ = ["InputNorm", "ParamCounter", "UNet", "build_model", "count_params", "count_trainable"]
