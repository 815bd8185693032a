"""Published Myriad X (NCS2 / OAK RVC2) measurements of networks this package reconstructs.

Every point is a *measured* figure (FP16, batch 1) of one network at one input size, with what the
figure measures (``quantity``):

- ``device``: latency of one request on the chip (device compute; Luxonis on-device latency and the
  CNV "device" figures) under the plugin's default two streams;
- ``device_layers``: the sum of the device's per-layer counters (nn-Meter), no per-inference cost;
- ``e2e_usb3`` / ``e2e_usb2``: a synchronous host loop over USB 3 / USB 2 with FP32 host input and
  output (the host/USB term of the model is added);
- ``period``: 1000 / FPS in throughput mode (several requests in flight): NOT a latency; the model
  converts it through its fitted latency/period ratio.

A *family* is one network architecture (all its widths / input sizes): the unit held out by the
leave-one-family-out validation. Sources (see each network module for the architecture facts):

- ``cnv``: published NCS2 latencies of the FINN CNV networks (device and with host/USB);
- ``prg``: NitinJSanket/prg_prgncs README, NCS2 table (FPS of a synchronous Python loop on USB 2,
  25 timed runs after 10 warm-up): period = latency = 1000 / FPS;
- ``piechocki2022``: Piechocki et al., IEEE Access 10:124835 (2022): Raspberry Pi 4 host, FP16 IR,
  end to end, 2.30 +- 0.10 ms;
- ``nn-meter``: microsoft/nn-Meter bench dataset, ``alexnet_1356`` on ``myriadvpu_openvino2019r2``;
- ``luxonis-rvc2``: docs.luxonis.com "RVC2 NN Performance" (one Myriad X, 8 SHAVEs, 2 inference
  threads): on-device latency and FPS;
- ``intel-ov2022.1``: openvinotoolkit/openvino ``docs/_static/csv/benchmark-data.csv``, rows
  OV-2022.1 / NCS2, Throughput-FP16 (async, 4 requests, i7-8700 host);
- ``rosvino``: lakshmi-sathi/rosvino README, blocking inference in a ROS node (lower confidence).

Left out: the Luxonis DeepLabV3 rows (custom person-segmentation DeepLabV3+ blobs whose head is not
published with the table), the YOLOv6 / YOLOv7 rows and the Intel rows of detectors with
framework-specific post-processing (SSD-Lite, EfficientDet, Faster R-CNN, SSD-ResNet34, YOLOv4,
Inception-v4, FaceNet): not reconstructed here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from torch import nn

#: quantity names (see the module docstring)
QUANTITIES = ("device", "device_layers", "e2e_usb3", "e2e_usb2", "period")


@dataclass(frozen=True)
class MyriadPoint:
    """One published Myriad X measurement: network ``network(**kwargs)`` at ``input_shape``."""

    name: str
    family: str
    network: str
    input_shape: tuple[int, ...]
    quantity: str
    ms: float  #: measured value (ms)
    source: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    confidence: str = "high"

    def build(self) -> nn.Module:
        """The network of this point (eval mode)."""
        return networks()[self.network](**self.kwargs)


@lru_cache(maxsize=1)
def networks() -> dict[str, Callable[..., nn.Module]]:
    """Factories of the calibration networks by name."""
    from dalp_moo.backends.zoo.cnv import cnv
    from dalp_moo.backends.zoo.mobile import deeplabv3_mnv2, mobileone_s0
    from dalp_moo.backends.zoo.nnmeter import alexnet_1356
    from dalp_moo.backends.zoo.omz import densenet121, inception_v3, mobilenet_ssd, unet_camvid
    from dalp_moo.backends.zoo.prg import prg_net
    from dalp_moo.backends.zoo.thermo import thermo_unet
    from dalp_moo.backends.zoo.yolo import yolov3_tiny, yolov8

    return {"cnv": cnv, "prg": prg_net, "thermo_unet": thermo_unet, "alexnet_1356": alexnet_1356,
            "mobileone_s0": mobileone_s0, "deeplabv3_mnv2": deeplabv3_mnv2, "yolov3_tiny": yolov3_tiny,
            "yolov8": yolov8, "densenet121": densenet121, "inception_v3": inception_v3,
            "mobilenet_ssd": mobilenet_ssd, "unet_camvid": unet_camvid}


def _points() -> list[MyriadPoint]:
    pts: list[MyriadPoint] = []
    cnv_ms = {0.25: (1.90, 3.40), 0.5: (1.95, 3.50), 1.0: (2.39, 3.97), 2.0: (4.98, 6.60)}
    for s, (dev, e2e) in cnv_ms.items():
        pts.append(MyriadPoint(f"CNV-s{s}", "cnv", "cnv", (1, 3, 32, 32), "device", dev, "cnv", {"scale": s}))
        pts.append(MyriadPoint(f"CNV-s{s} (host/USB)", "cnv", "cnv", (1, 3, 32, 32), "e2e_usb3", e2e, "cnv",
                               {"scale": s}))
    prg = [((16, 32, 64, 128), 256, 1, 7.5), ((16, 32, 64, 128), 512, 1, 2.0), ((16, 32, 64, 128), 256, 2, 7.25),
           ((16, 32, 64, 128), 256, 6, 6.01), ((8, 16, 32, 64), 256, 1, 11.2), ((8, 16, 32, 64), 512, 1, 3.0),
           ((8, 16, 32, 64), 256, 2, 10.7), ((8, 16, 32, 64), 256, 6, 8.2),
           ((10, 15, 23, 35, 53, 80, 120), 256, 1, 10.3), ((10, 15, 23, 35, 53, 80, 120), 512, 1, 2.8),
           ((10, 15, 23, 35, 53, 80, 120), 256, 2, 9.9), ((10, 15, 23, 35, 53, 80, 120), 256, 6, 7.7),
           ((8, 12, 18, 27, 41, 61, 92), 256, 6, 8.4)]
    for w, s, c, fps in prg:
        fam = f"prg-{len(w)}level"
        pts.append(MyriadPoint(f"prg {s}x{s}x{c} w{w[0]}..{w[-1]}", fam, "prg", (1, c, s, s), "e2e_usb2",
                               round(1000.0 / fps, 3), "prg", {"in_channels": c, "widths": w}))
    pts.append(MyriadPoint("thermo U-Net 24x32", "thermo-unet", "thermo_unet", (1, 1, 24, 32), "e2e_usb3", 2.30,
                           "piechocki2022"))
    pts.append(MyriadPoint("nn-Meter alexnet_1356", "nnmeter-alexnet", "alexnet_1356", (1, 3, 224, 224),
                           "device_layers", 15.486, "nn-meter"))
    lux = [("MobileOne-S0 224", "mobileone", "mobileone_s0", {}, 224, 165.5, 11.1),
           ("YOLOv8n 416", "yolov8", "yolov8", {"scale": "n"}, 416, 31.3, 56.9),
           ("YOLOv8n 640", "yolov8", "yolov8", {"scale": "n"}, 640, 14.3, 123.6),
           ("YOLOv8s 416", "yolov8", "yolov8", {"scale": "s"}, 416, 15.2, 111.9),
           ("YOLOv8m 416", "yolov8", "yolov8", {"scale": "m"}, 416, 6.0, 273.8)]
    for name, fam, net, kw, s, fps, lat in lux:
        pts.append(MyriadPoint(f"{name} (RVC2)", fam, net, (1, 3, s, s), "device", lat, "luxonis-rvc2", kw))
        pts.append(MyriadPoint(f"{name} (RVC2, period)", fam, net, (1, 3, s, s), "period", round(1000.0 / fps, 3),
                               "luxonis-rvc2", kw))
    intel = [("densenet-121-tf2", "densenet121", "densenet121", (1, 3, 224, 224), 26.59),
             ("inception-v3-tf", "inception-v3", "inception_v3", (1, 3, 299, 299), 50.40),
             ("mobilenet-ssd", "mobilenet-ssd", "mobilenet_ssd", (1, 3, 300, 300), 17.64),
             ("yolo-v3-tiny-tf", "yolov3-tiny", "yolov3_tiny", (1, 3, 416, 416), 29.39),
             ("deeplabv3", "deeplabv3", "deeplabv3_mnv2", (1, 3, 513, 513), 285.7),
             ("unet-camvid-onnx-0001", "unet-camvid", "unet_camvid", (1, 3, 368, 480), 1266.0)]
    for name, fam, net, shape, period in intel:
        pts.append(MyriadPoint(f"{name} (NCS2, period)", fam, net, shape, "period", period, "intel-ov2022.1"))
    pts.append(MyriadPoint("unet-camvid-onnx-0001 (sync, ROS)", "unet-camvid", "unet_camvid", (1, 3, 368, 480),
                           "e2e_usb3", 2650.0, "rosvino", confidence="low"))
    return pts


#: every calibration point, in a fixed order
POINTS: tuple[MyriadPoint, ...] = tuple(_points())
