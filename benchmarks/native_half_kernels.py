"""torch's native float16 CPU kernels vs exactly rounded FP16, per torch CPU capability.

The tests compare the ``ieee`` profile with a host-independent reference (every op in float64
on FP16 operands, its result rounded once to FP16; ``tests/test_precision_numerics.py``). This
script measures what the tests no longer assert: how close torch's native ``.half()`` CPU
kernels of this host come to that reference, and to the ``ieee`` emulation, under every torch
CPU capability this host supports (``ATEN_CPU_CAPABILITY``, with oneDNN capped to the same
instruction set by ``ONEDNN_MAX_CPU_ISA``; one subprocess each). The kernels
differ by instruction set and CPU family, so these are measurements of one host, merged into
the JSON under the host's CPU model (run it on other hosts to add theirs).

    python benchmarks/native_half_kernels.py [--capabilities default avx2 avx512]

Prints a table and writes benchmarks/results/native_half_kernels.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from dalp_moo.backends.host_model import host_id

CAPABILITIES = ("default", "avx2", "avx512")
#: oneDNN (convolutions, linear) picks its instruction set on its own: capped alongside
ONEDNN_ISA = {"default": "SSE41", "avx2": "AVX2", "avx512": "DEFAULT"}


def _cpu_model() -> str:
    return host_id()


def _cases() -> list[tuple[str, object, tuple[int, ...], str]]:
    import torch.nn.functional as F
    from torch import nn

    from dalp_moo.model import InputNorm

    class Fn(nn.Module):
        def __init__(self, fn, *params) -> None:  # noqa: ANN001
            super().__init__()
            self.fn = fn
            for i, p in enumerate(params):
                self.register_buffer(f"b{i}", p)

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.fn(self, x)

    import torch

    torch.manual_seed(1)
    norm = InputNorm([300.0, 280.0, 250.0, 200.0] * 2, [1 / 40.0, 1 / 35.0, 1 / 50.0, 1 / 20.0] * 2)
    return [
        ("conv3x3", nn.Conv2d(8, 16, 3, padding=1), (2, 8, 20, 20), "randn4"),
        ("conv5x5 depthwise", nn.Conv2d(16, 16, 5, padding=2, groups=16), (2, 16, 20, 20), "randn4"),
        ("conv3x3 grouped", nn.Conv2d(16, 8, 3, padding=1, groups=4), (2, 16, 20, 20), "randn4"),
        ("conv1x1 no bias", nn.Conv2d(12, 24, 1, bias=False), (2, 12, 20, 20), "randn4"),
        ("linear", nn.Linear(64, 32), (40, 64), "randn4"),
        ("max_pool2d", nn.MaxPool2d(2), (2, 8, 20, 20), "randn4"),
        ("avg_pool2d", nn.AvgPool2d(2), (2, 8, 20, 20), "randn4"),
        ("adaptive_avg_pool2d", nn.AdaptiveAvgPool2d(1), (2, 8, 20, 20), "randn4"),
        ("relu", nn.ReLU(), (2, 8, 20, 20), "randn4"),
        ("relu6", nn.ReLU6(), (2, 8, 20, 20), "randn4"),
        ("gelu", nn.GELU(), (2, 8, 20, 20), "randn4"),
        ("silu", nn.SiLU(), (2, 8, 20, 20), "randn4"),
        ("sigmoid", nn.Sigmoid(), (2, 8, 20, 20), "randn4"),
        ("add", Fn(lambda s, x: x + s.b0, torch.randn(1, 8, 16, 16) * 3), (2, 8, 16, 16), "randn3"),
        ("mul", Fn(lambda s, x: x * s.b0, torch.randn(1, 8, 1, 1)), (2, 8, 16, 16), "randn3"),
        ("bilinear upsample", Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="bilinear",
                                                            align_corners=False)), (2, 8, 16, 16), "randn3"),
        ("(x - m) * s", norm, (2, 8, 16, 16), "dn"),
        ("x * sigmoid(pool(x))", Fn(lambda s, x: x * torch.sigmoid(F.adaptive_avg_pool2d(x, 1))),
         (2, 8, 16, 16), "randn3"),
    ]


def _measure() -> dict:
    """Agreement table of this process's torch CPU capability."""
    import torch
    from torch.overrides import TorchFunctionMode

    from dalp_moo.precision import deploy_fp16

    def fp16_values(out):  # noqa: ANN001, ANN202
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return out.half().to(out.dtype)
        if isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out):
            return type(out)(fp16_values(o) for o in out)
        return out

    class RoundEachOp(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            return fp16_values(func(*args, **(kwargs or {})))

    def ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mag = torch.maximum(a.abs(), b.abs()).clamp(min=2.0 ** -14)
        d = (a - b).abs() / torch.exp2(torch.floor(torch.log2(mag)) - 10)
        return torch.where(a == b, torch.zeros_like(d), d)

    rows = []
    for name, module, shape, kind in _cases():
        torch.manual_seed(0)
        if kind == "dn":
            x = torch.round(torch.rand(shape) * 4095)
        else:
            x = torch.randn(shape) * (4 if kind == "randn4" else 3)
        module = module.eval()
        with torch.no_grad():
            native = copy.deepcopy(module).half()(x.half()).float()
            ref_model = copy.deepcopy(module).half().double()
            with RoundEachOp():
                reference = ref_model(x.half().double()).float()
        emulated = deploy_fp16(module, "ieee")(x)
        d_ref, d_emu = ulps(native, reference), ulps(native, emulated)
        rows.append({"op": name, "native_vs_reference_exact": float((d_ref == 0).float().mean()),
                     "native_vs_reference_within_1ulp": float((d_ref <= 1).float().mean()),
                     "native_vs_reference_max_ulp": float(d_ref.max()),
                     "native_vs_ieee_within_1ulp": float((d_emu <= 1).float().mean()),
                     "native_vs_ieee_max_ulp": float(d_emu.max())})
    return {"capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capabilities", nargs="+", default=list(CAPABILITIES),
                        help="CPU instruction-set caps to run under, each in a child process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "native_half_kernels.json"),
                        help="result JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure()))
        return

    tables = {}
    for cap in args.capabilities:
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, ONEDNN_MAX_CPU_ISA=ONEDNN_ISA.get(cap, "DEFAULT"))
        proc = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                              check=True)
        table = json.loads(proc.stdout.strip().splitlines()[-1])
        if table["capability"].lower() != cap.lower():  # this host or build lacks it
            print(f"{cap}: not available (torch ran {table['capability']})")
            continue
        tables[cap] = table | {"ONEDNN_MAX_CPU_ISA": env["ONEDNN_MAX_CPU_ISA"]}
        print(f"\ntorch CPU capability {table['capability']}")
        print(f"{'op':24s} {'exact':>7s} {'<=1ulp':>7s} {'max':>5s}   vs ieee: {'<=1ulp':>7s} {'max':>5s}")
        for r in table["rows"]:
            print(f"{r['op']:24s} {r['native_vs_reference_exact']:7.4f} {r['native_vs_reference_within_1ulp']:7.4f} "
                  f"{r['native_vs_reference_max_ulp']:5.0f}            {r['native_vs_ieee_within_1ulp']:7.4f} "
                  f"{r['native_vs_ieee_max_ulp']:5.0f}")

    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result.setdefault("description", "torch native float16 CPU kernels (x.half() modules) vs exactly rounded "
                      "FP16 (each op in float64 on FP16 operands, rounded once) and vs the ieee profile; "
                      "fractions of output elements; ulp of the larger magnitude, subnormal ulp 2^-24; "
                      "measured per host and torch CPU capability")
    result.setdefault("hosts", {})[_cpu_model()] = {"cores": os.cpu_count(), "python": platform.python_version(),
                                                    "capabilities": tables}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
