"""Per-layer FP16 diagnostics of a deployed model: where values overflow, underflow, get flushed,
and how far each layer's output drifts from FP32.

:func:`diagnose` returns a JSON-serialisable dict (stored with an evaluation);
:func:`format_diagnostics` renders it as a text table (for ``dalp-moo diagnose``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from dalp_moo.precision.emulate import DeployedFP16, deploy_fp16
from dalp_moo.precision.numerics import fmt_of, round_profile, round_to
from dalp_moo.precision.profiles import NumericsProfile, get_profile

_COUNTS = ("elements", "overflow", "nan", "underflow", "flushed")


class Recorder:
    """Rounds like the emulator and accumulates per-layer statistics (keyed by the innermost
    module executing the op)."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.rows: dict[str, dict[str, Any]] = {}

    def _row(self) -> dict[str, Any]:
        name = self.stack[-1] if self.stack else "<model>"
        row = self.rows.get(name)
        if row is None:
            row = {"name": name, "ops": [], "shift": None, "max_abs": 0.0, "max_abs_scaled": 0.0,
                   **{k: 0 for k in _COUNTS}}
            self.rows[name] = row
        return row

    def note_shift(self, shift: int) -> None:
        self._row()["shift"] = int(shift)

    def round(self, x: torch.Tensor, scale: float, profile: NumericsProfile,
              op: str) -> torch.Tensor:
        """Store ``x`` (true domain; stored in the ``scale`` domain) under ``profile`` and record
        what happened. ``overflow`` counts finite values beyond the format's range in the scaled
        domain (inf under ``overflow='inf'``, clamped under ``'saturate'``)."""
        row = self._row()
        if op and op not in row["ops"]:
            row["ops"].append(op)
        fmt = fmt_of(profile)
        ftz = profile.flush_subnormals
        with torch.no_grad():
            finite = torch.isfinite(x)
            xs = x * scale if scale != 1.0 else x
            q = round_profile(x, profile, scale)
            absx = torch.where(finite, x.abs(), torch.zeros_like(x))
            row["elements"] += int(x.numel())
            if x.numel():
                row["max_abs"] = max(row["max_abs"], float(absx.amax()))
                row["max_abs_scaled"] = max(row["max_abs_scaled"], float(absx.amax()) * scale)
            row["overflow"] += int((finite & (xs.abs() >= fmt.overflow)).sum())
            row["nan"] += int(torch.isnan(q).sum())
            row["underflow"] += int((finite & (x != 0) & (q.abs() < fmt.min_normal)).sum())
            if ftz:
                stored_raw = round_to(xs, fmt)  # before FTZ
                q_raw = stored_raw if scale == 1.0 else round_to(stored_raw * (1.0 / scale), fmt)
                row["flushed"] += int(((q_raw != 0) & (q == 0)).sum())
        return q


def _hook_stack(model: nn.Module, recorder: Recorder) -> list:
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def pre(m: nn.Module, inputs: tuple, name: str = name) -> None:
            recorder.stack.append(name)

        def post(m: nn.Module, inputs: tuple, output: Any) -> None:
            if recorder.stack:
                recorder.stack.pop()

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def _capture_outputs(model: nn.Module, store: dict[str, list[torch.Tensor]]) -> list:
    """Hooks appending every module's tensor output to ``store[name]`` (only ``detach`` and
    ``clone``, which the emulator passes through unrounded and unrecorded)."""
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(m: nn.Module, inputs: tuple, output: Any, name: str = name) -> None:
            if isinstance(output, torch.Tensor):
                store.setdefault(name, []).append(output.detach().clone())

        handles.append(module.register_forward_hook(hook))
    return handles


def _compare(ref: dict[str, list[torch.Tensor]], emu: dict[str, list[torch.Tensor]],
             errors: dict[str, list[float]], skip: frozenset[str] = frozenset()) -> None:
    """Accumulate name -> [sum sq diff over finite outputs, sum sq ref, non-finite count]
    (modules in ``skip`` compute something else once converted and are not compared)."""
    for name, outs in emu.items():
        if name in skip:
            continue
        for r, o in zip(ref.get(name, []), outs, strict=False):
            if r.shape != o.shape:
                continue
            r, o = r.float(), o.float()
            finite = torch.isfinite(o)
            diff = torch.where(finite, o - r, torch.zeros_like(o))
            acc = errors.setdefault(name, [0.0, 0.0, 0])
            acc[0] += float((diff * diff).sum())
            acc[1] += float((r * r).sum())
            acc[2] += int((~finite).sum())


def diagnose(model: nn.Module, profile: str | NumericsProfile = "myriadx",
             batches: Iterable[torch.Tensor] | torch.Tensor = (), **overrides: Any) -> dict:
    """Per-layer FP16 statistics of ``model`` deployed under ``profile`` over ``batches``.

    ``model`` is an FP32 model (deployed here, untouched) or a :class:`DeployedFP16`. Each layer
    row: ``name``, ``ops`` (rounded op kinds), ``shift`` (weights analysis, hardware layers),
    ``max_abs`` (largest finite magnitude before rounding, true domain) and ``max_abs_scaled``
    (in the weights-analysis scaled domain; compare with 65504 in FP16), ``headroom`` (largest
    finite value of the format / max_abs_scaled), counts of ``elements``, ``overflow`` (finite values beyond the format's range: inf, or
    clamped under ``overflow='saturate'``),
    ``nan``, ``underflow`` (non-zero values stored as zero or subnormal), ``flushed`` (subnormals
    flushed to zero by FTZ), and ``rel_err`` (||deployed - FP32|| / ||FP32|| of the module output,
    over finite values) with ``nonfinite`` outputs. ``summary`` aggregates them.
    """
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    if isinstance(model, DeployedFP16):
        deployed = model
        reference = None
    else:
        deployed = deploy_fp16(model, get_profile(profile, **overrides))
        reference = copy_eval(model)
    recorder = Recorder()
    errors: dict[str, list[float]] = {}
    out_err = [0.0, 0.0, 0, 0]
    n_batches = 0
    for x in batches:
        x = x.float()
        n_batches += 1
        if deployed.plan is None:
            deployed.prepare(x)
        ref_out = None
        ref_store: dict[str, list[torch.Tensor]] = {}
        emu_store: dict[str, list[torch.Tensor]] = {}
        if reference is not None:
            handles = _capture_outputs(reference, ref_store)
            try:
                with torch.no_grad():
                    ref_out = reference(x).float()
            finally:
                for h in handles:
                    h.remove()
        handles = _hook_stack(deployed.model, recorder)
        if reference is not None:
            handles += _capture_outputs(deployed.model, emu_store)
        deployed.recorder = recorder
        try:
            y = deployed(x)
        finally:
            deployed.recorder = None
            for h in handles:
                h.remove()
        skip = frozenset(n for n, m in deployed.model.named_modules()
                         if deployed.plan is not None and m is deployed.plan.norm
                         and deployed.plan.input_fold)
        _compare(ref_store, emu_store, errors, skip)
        del ref_store, emu_store
        finite = torch.isfinite(y)
        out_err[2] += int((~finite).sum())
        out_err[3] += int(y.numel())
        if ref_out is not None:
            d = torch.where(finite, y - ref_out, torch.zeros_like(y))
            out_err[0] += float((d * d).sum())
            out_err[1] += float((ref_out * ref_out).sum())
    fmax = fmt_of(deployed.profile).max
    layers = []
    for row in recorder.rows.values():
        row = dict(row)
        row["headroom"] = (fmax / row["max_abs_scaled"]) if row["max_abs_scaled"] > 0 else None
        e = errors.get(row["name"])
        row["rel_err"] = math.sqrt(e[0] / e[1]) if e and e[1] > 0 else None
        row["nonfinite"] = int(e[2]) if e else None
        layers.append(row)
    summary: dict[str, Any] = {k: int(sum(r[k] for r in layers)) for k in _COUNTS}
    summary.update(
        batches=n_batches,
        profile=deployed.profile.name,
        limit=fmax,
        max_abs_scaled=max((r["max_abs_scaled"] for r in layers), default=0.0),
        min_headroom=min((r["headroom"] for r in layers if r["headroom"] is not None), default=None),
        first_overflow=next((r["name"] for r in layers if r["overflow"]), None),
        output_nonfinite_fraction=out_err[2] / max(out_err[3], 1),
        output_rel_err=math.sqrt(out_err[0] / out_err[1]) if out_err[1] > 0 else None,
    )
    return {"profile": deployed.profile.to_dict(), "layers": layers, "summary": summary}


def copy_eval(model: nn.Module) -> nn.Module:
    """A detached FP32 eval copy (the reference run must not touch the caller's model)."""
    import copy

    ref = copy.deepcopy(model).cpu().float().eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def format_diagnostics(d: dict) -> str:
    """Text table of a :func:`diagnose` result: one row per layer, then the summary."""
    header = ("layer", "ops", "shift", "max|x|", "max|x*2^s|", "headroom", "ovf", "nan", "undf",
              "flush", "rel.err")
    rows = [header]
    for r in d["layers"]:
        rows.append((r["name"], ",".join(r["ops"])[:28], _fmt(r["shift"]), _fmt(r["max_abs"]),
                     _fmt(r["max_abs_scaled"]), _fmt(r["headroom"]), _fmt(r["overflow"]),
                     _fmt(r["nan"]), _fmt(r["underflow"]), _fmt(r["flushed"]),
                     _fmt(r["rel_err"], ".2e")))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    s = d["summary"]
    lines.append("")
    lines.append(
        f"profile {s['profile']}: {s['batches']} batch(es); overflow {s['overflow']}, NaN "
        f"{s['nan']}, underflow {s['underflow']}, flushed {s['flushed']} of {s['elements']} "
        f"values; max scaled |x| {_fmt(s['max_abs_scaled'])} (limit {_fmt(s['limit'])}, min headroom "
        f"{_fmt(s['min_headroom'])}); first overflow: {s['first_overflow'] or 'none'}; output "
        f"non-finite {s['output_nonfinite_fraction']:.2%}, rel. error {_fmt(s['output_rel_err'], '.2e')}")
    return "\n".join(lines)
