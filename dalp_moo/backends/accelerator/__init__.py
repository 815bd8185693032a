"""Modelled multi-core edge accelerator: ZigZag-costed compute cores inside a system model.

>>> from dalp_moo.backends.accelerator import AcceleratorConfig, AcceleratorModel, trace_layers, dynamic_cost
>>> model = AcceleratorModel(AcceleratorConfig(cache_dir="~/.cache/dalp_moo/accelerator"))
>>> cost = model.cost(trace_layers(net, torch.zeros(1, 3, 32, 32), w_bits=8, a_bits=8))
>>> d = dynamic_cost(cost.stage_energy_pj, cost.stage_latency_cycles, exit_fractions)
>>> reduction(d.et_avg, et_base(static.energy_pj, static.latency_cycles))

Modules: :mod:`.workload` (``LayerSpec``, ``trace_layers``), :mod:`.zigzag_core` (one core via
ZigZag, side effects contained), :mod:`.core` (weight tiling, per-layer cache), :mod:`.system`
(quad-core system, allocation search, ``SystemCost``), :mod:`.dynamic` (ET formulas),
:mod:`.sweep` (alignment sweep). Every figure is modelled, not measured.
"""

from dalp_moo.backends.accelerator.config import AcceleratorConfig
from dalp_moo.backends.accelerator.core import CoreLayerCost, CoreModel
from dalp_moo.backends.accelerator.dynamic import DynamicCost, cumulative, dynamic_cost, et_avg, et_base, reduction
from dalp_moo.backends.accelerator.system import SYSTEM_VERSION, AcceleratorModel, LayerCost, StageCost, SystemCost
from dalp_moo.backends.accelerator.workload import LayerSpec, trace_layers
from dalp_moo.backends.accelerator.zigzag_core import MODEL_VERSION, CoreQuery, CoreResult

__all__ = [
    "MODEL_VERSION", "SYSTEM_VERSION", "AcceleratorConfig", "AcceleratorModel", "CoreLayerCost", "CoreModel",
    "CoreQuery", "CoreResult", "DynamicCost", "LayerCost", "LayerSpec", "StageCost", "SystemCost", "cumulative",
    "dynamic_cost", "et_avg", "et_base", "reduction", "trace_layers",
]
