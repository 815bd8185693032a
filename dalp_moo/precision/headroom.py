"""Deployment-aware input rescaling: give the first hardware layer FP16 headroom.

The MYRIAD weights analysis scales a layer's weights by ``2**shift`` chosen from the weights
alone, so the scaled-domain output grows with the *input* magnitude: raw 12-bit digital numbers
(up to 4095) times a conv's fan-in overflow 65504 on bright pixels, and no fine-tuning of the
weights can fix it (shrinking the weights raises the shift by the same factor). Moving a
power-of-two factor from the input into the first convolution's weights,
``InputNorm.scale *= 2**-k`` and ``W *= 2**k``, leaves the FP32 function unchanged (exact in
binary arithmetic, barring under/overflow) and lowers that layer's shift by ``k``. This is the
function-preserving form of the workaround Intel advised (scale inputs down).

The converter undoes it: ``ov.convert_model`` (measured with OpenVINO 2026.4.1) folds the input
multiply back into the first convolution, so the deployed weights are the original ones. Under
a profile that emulates the converted graph (``fold_input_scale``, the default) the rescaling
therefore changes nothing that is deployed and :func:`rescale_input_for_headroom` leaves the
model alone (returns 0); it only acts with ``fold_input_scale=False``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from dalp_moo.log import logger
from dalp_moo.precision.emulate import _find_input_norm
from dalp_moo.precision.profiles import NumericsProfile, get_profile


class _ConsumerProbe(TorchFunctionMode):
    """Finds every op that consumes the input-normalisation output."""

    _META = frozenset({"__get__", "dim", "size", "numel", "__len__", "shape"})

    def __init__(self) -> None:
        super().__init__()
        self.source: torch.Tensor | None = None
        self.consumers: list[tuple[str, Any]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if self.source is not None and name not in self._META:
            flat = list(args) + list(kwargs.values())
            for a in flat:
                items = a if isinstance(a, (list, tuple)) else [a]
                if any(t is self.source for t in items if isinstance(t, torch.Tensor)):
                    weight = args[1] if name == "conv2d" and len(args) > 1 else kwargs.get("weight")
                    is_input = bool(args) and args[0] is self.source
                    self.consumers.append((name if (name != "conv2d" or is_input) else "other",
                                           weight))
        return func(*args, **kwargs)


def rescale_input_for_headroom(model: nn.Module, x: torch.Tensor,
                               profile: str | NumericsProfile = "myriadx",
                               max_k: int = 12) -> int:
    """Move ``2**k`` from the model's ``InputNorm`` into the convolutions reading its output, in
    place, choosing the smallest ``k`` for which no first-layer value of ``x`` overflows in the
    scaled domain of ``profile``. Returns ``k`` (0: nothing changed: no overflow, no
    ``InputNorm``, its output feeds something other than convolutions, or the profile folds the
    input scale into the first convolution as the converter does, which undoes any rescaling).
    """
    from dalp_moo.precision.diagnostics import diagnose

    prof = get_profile(profile)
    norm = _find_input_norm(model)
    if norm is None or not prof.weights_analysis or prof.fold_input_scale:
        return 0
    probe = _ConsumerProbe()
    hook = norm.register_forward_hook(lambda m, i, o: setattr(probe, "source", o))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), probe:
            model(x[:1])
    finally:
        hook.remove()
        model.train(was_training)
    if not probe.consumers or any(n != "conv2d" for n, _ in probe.consumers):
        logger.debug("input rescaling skipped: the input feeds %s",
                     sorted({n for n, _ in probe.consumers}))
        return 0
    weights = [w for _, w in probe.consumers]
    names = {id(p): n for n, p in model.named_parameters()}
    first = [names.get(id(w)) for w in weights]

    def first_overflows() -> bool:
        d = diagnose(model, prof, x)
        rows = {r["name"]: r for r in d["layers"]}
        return any(rows.get(n.rsplit(".", 1)[0], {}).get("overflow", 0) for n in first if n)

    if not first_overflows():
        return 0
    identity_attr = hasattr(norm, "identity")
    k = 0
    with torch.no_grad():
        while k < max_k and first_overflows():
            norm.scale.mul_(0.5)
            if identity_attr:
                norm.identity = False
            for w in weights:
                w.mul_(2.0)
            k += 1
    logger.debug("input rescaled by 2^-%d for FP16 headroom (%s)", k, ", ".join(map(str, first)))
    return k
