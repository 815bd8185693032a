"""Architecture -> torch module: blocks of the search space and the U-Net assembly."""

from dalp_moo.model.unet import InputNorm, UNet, build_model, count_trainable

__all__ = ["InputNorm", "UNet", "build_model", "count_trainable"]
