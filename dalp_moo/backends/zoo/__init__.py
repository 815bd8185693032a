"""Networks used to calibrate and check the latency models (plain ``torch.nn``).

- :mod:`~dalp_moo.backends.zoo.random_unet`: random U-Net-style networks for the host model;
- the Myriad X calibration networks, each reconstructed from its published architecture with the
  source cited in its module: :mod:`~dalp_moo.backends.zoo.cnv` (FINN CNV),
  :mod:`~dalp_moo.backends.zoo.prg` (prg_prgncs encoder-decoder sweep),
  :mod:`~dalp_moo.backends.zoo.thermo` (24x32 thermal U-Net), :mod:`~dalp_moo.backends.zoo.nnmeter`
  (nn-Meter ``alexnet_1356``), :mod:`~dalp_moo.backends.zoo.mobile` (MobileOne-S0, DeepLabV3),
  :mod:`~dalp_moo.backends.zoo.yolo` (YOLOv3-tiny, YOLOv8) and :mod:`~dalp_moo.backends.zoo.omz`
  (DenseNet-121, Inception-v3, MobileNet-SSD, U-Net CamVid);
- :mod:`~dalp_moo.backends.zoo.myriad_points`: the published measurements of those networks.
"""

from dalp_moo.backends.zoo.cnv import CNV_LATENCY, cnv
from dalp_moo.backends.zoo.random_unet import RandomUNet, random_unet

__all__ = ["CNV_LATENCY", "RandomUNet", "cnv", "random_unet"]
