"""Cost of the accelerator cost model, and the figures it produces (all modelled, not measured).

1. Query time of the ZigZag-costed compute core per unique layer: cold (ZigZag runs), warm from
   the on-disk cache (a new model on the same folder, as a new worker process would be) and warm
   in memory.
2. Query time per MobileNetV2-with-exits candidate (the paper's CIFAR backbone, built from the
   reference table as LayerSpecs): cold cache (ZigZag runs + allocation search), layers cached
   but a new candidate (allocation search only: the common case in a search), and everything
   cached (disk).
3. The 32-vs-33 output-channel alignment figures of one 1x1 layer, and of a backbone layer.
4. Allocation search: EDP of the GA (greedy-seeded) against greedy, single-core and round-robin.
5. Checks: lpf_limit 4 against 6 on every unique backbone/head layer (same energy and latency?),
   and the fixed against ZigZag's searched spatial mapping on the static network.
6. With the paper's published exit fractions for its highlighted network (exits A, E, F, H, K;
   0.106/0.326/0.117/0.191/0.260), the modelled ET_avg / ET_base (the paper reports ~0.41).
   Head types of that network are not published; one-layer heads are assumed.

Prints a table and writes ``benchmarks/results/accel_cost.json``. Timings are wall-clock on a
shared machine (other jobs running): treat them as rough, compare ratios within one run.

    python benchmarks/accel_cost.py            # full run (several minutes, lpf check included)
    python benchmarks/accel_cost.py --quick    # no lpf/mapping checks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from dalp_moo.backends.accelerator import (
    AcceleratorConfig,
    AcceleratorModel,
    CoreModel,
    LayerSpec,
    dynamic_cost,
    et_base,
    reduction,
)
from dalp_moo.backends.accelerator.core import plan_tiles
from dalp_moo.backends.accelerator.zigzag_core import MODEL_VERSION, zigzag_version

RESULTS = Path(__file__).resolve().parent / "results" / "accel_cost.json"

# CIFAR-style MobileNetV2 of the reference: (in, expanded, out, stride, residual) per block 0..11
BLOCKS = [(32, 32, 16, 1, False), (16, 96, 24, 1, False), (24, 144, 24, 1, True), (24, 144, 32, 1, False),
          (32, 192, 32, 1, True), (32, 192, 64, 2, False), (64, 384, 64, 1, True), (64, 384, 96, 1, False),
          (96, 576, 96, 1, True), (96, 576, 160, 2, False), (160, 960, 160, 1, True), (160, 960, 320, 1, False)]
LETTERS = "ABCDEFGHIJK"  # exit after block 0..9, K = final (block 11)
REFERENCE_CUMULATIVE_MACS_M = {0: 1.70, 1: 6.52, 2: 14.93, 3: 24.51, 4: 38.86, 5: 48.74, 6: 62.21, 7: 82.76,
                               8: 118.29, 9: 140.15, 11: 195.33}


def block_of(letter: str) -> int:
    return 11 if letter == "K" else LETTERS.index(letter)


def mobilenetv2_ee(exits: str = "K", heads: dict[str, int] | None = None, w_bits: int = 8, a_bits: int = 8,
                   exit_w_bits: int | None = None, exit_a_bits: int | None = None,
                   classes: int = 10) -> list[LayerSpec]:
    """Layers of the backbone with exit heads after the blocks named by ``exits`` (letters)."""
    heads = heads or {}
    ew, ea = exit_w_bits or w_bits, exit_a_bits or a_bits
    at = {block_of(e): e for e in exits}
    if 11 not in at:
        raise ValueError("the final exit K is always present")
    out = [LayerSpec("stem", "conv", 32, 3, 32, 32, 3, 3, w_bits=w_bits, a_bits=a_bits)]
    stage, size = 0, 32
    for b, (cin, ce, cout, s, res) in enumerate(BLOCKS):
        osz = size // s
        kw = {"w_bits": w_bits, "a_bits": a_bits, "stage": stage}
        if b > 0:
            out.append(LayerSpec(f"b{b}.expand", "conv", ce, cin, size, size, **kw))
        out.append(LayerSpec(f"b{b}.dw", "dwconv", ce, ce, osz, osz, 3, 3, s, ce, ix=size, iy=size, **kw))
        out.append(LayerSpec(f"b{b}.project", "conv", cout, ce, osz, osz, **kw))
        if res:
            out.append(LayerSpec(f"b{b}.add", "add", cout, cout, osz, osz, **kw))
        size = osz
        if b in at:
            e = at[b]
            hw = {"w_bits": ew, "a_bits": ea, "stage": stage, "branch": "exit"}
            k = size // 4
            out.append(LayerSpec(f"exit{e}.pool", "pool", cout, cout, 4, 4, k, k, k, ix=size, iy=size, **hw))
            if heads.get(e, 1) == 1:
                out.append(LayerSpec(f"exit{e}.fc", "fc", classes, cout * 16, **hw))
            else:
                out.append(LayerSpec(f"exit{e}.fc1", "fc", cout * 8, cout * 16, **hw))
                out.append(LayerSpec(f"exit{e}.fc2", "fc", classes, cout * 8, **hw))
            stage += 1
    return out


def backbone_macs_check() -> dict[str, Any]:
    layers = mobilenetv2_ee("K")
    rows, cum = {}, 0
    for s in layers:
        if s.op in ("conv", "dwconv") and not s.name.startswith("exit"):
            cum += s.macs
        if s.name.endswith(".project"):
            b = int(s.name[1:].split(".")[0])
            if b in REFERENCE_CUMULATIVE_MACS_M:
                rows[LETTERS[b] if b < 10 else ("K" if b == 11 else str(b))] = {
                    "ours_M": round(cum / 1e6, 2), "reference_M": REFERENCE_CUMULATIVE_MACS_M[b]}
    return rows


def unique_queries(candidates: list[list[LayerSpec]], cfg: AcceleratorConfig) -> list[Any]:
    seen: dict[Any, None] = {}
    for layers in candidates:
        for s in layers:
            if s.op in ("conv", "dwconv", "fc"):
                for q, _, _ in plan_tiles(s, cfg):
                    seen.setdefault(q, None)
    return list(seen)


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the lpf_limit and spatial-mapping checks")
    ap.add_argument("--out", default=str(RESULTS), help="result JSON")
    args = ap.parse_args()

    candidates = {
        "static (K only)": mobilenetv2_ee("K"),
        "paper highlighted A,E,F,H,K": mobilenetv2_ee("AEFHK"),
        "quantisation study D,F,I,K": mobilenetv2_ee("DFIK"),
        "D,F,I,K two-layer heads": mobilenetv2_ee("DFIK", {e: 2 for e in "DFIK"}),
        "B,D,G,J,K": mobilenetv2_ee("BDGJK"),
    }
    result: dict[str, Any] = {
        "method": "modelled", "emulated": True,
        "model": "ZigZag-costed Edge-TPU-like cores in the project's quad-core system model",
        "zigzag_version": zigzag_version(), "model_version": MODEL_VERSION,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                    "note": "shared machine; wall-clock timings are noisy"},
        "backbone_macs_check": backbone_macs_check(),
    }
    with tempfile.TemporaryDirectory(prefix="accel-bench-") as tmp:
        cfg = AcceleratorConfig(cache_dir=tmp)
        queries = unique_queries(list(candidates.values()), cfg)

        # 1. per-layer query time
        core = CoreModel(cfg)
        cold = []
        for q in queries:
            _, dt = timed(lambda q=q: core.query(q))
            cold.append(dt)
        core2 = CoreModel(cfg)
        disk = [timed(lambda q=q: core2.query(q))[1] for q in queries]
        memory = [timed(lambda q=q: core2.query(q))[1] for q in queries]
        assert core2.zigzag_calls == 0
        result["per_layer_query_s"] = {
            "unique_queries": len(queries),
            "cold_zigzag": {"median": statistics.median(cold), "mean": statistics.fmean(cold), "max": max(cold),
                            "total": sum(cold)},
            "warm_disk": {"median": statistics.median(disk), "mean": statistics.fmean(disk)},
            "warm_memory": {"median": statistics.median(memory), "mean": statistics.fmean(memory)},
        }

        # 2. per candidate: cold / layers cached (new candidate) / fully cached
        per_cand: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="accel-bench-cold-") as cold_dir:
            for name, layers in candidates.items():
                m_cold = AcceleratorModel(replace(cfg, cache_dir=cold_dir))
                cost, t_cold = timed(lambda m=m_cold, ls=layers: m.cost(ls))
                per_cand[name] = {"layers": len(layers), "exits": len(cost.stages),
                                  "cold_s": t_cold, "cold_zigzag_runs": m_cold.core.zigzag_calls}
        for name, layers in candidates.items():
            m = AcceleratorModel(replace(cfg, cache_dir=tmp))  # ZigZag results cached, allocation new
            cost, t_alloc = timed(lambda m=m, ls=layers: m.cost(ls))
            m2 = AcceleratorModel(replace(cfg, cache_dir=tmp))  # everything cached on disk
            again, t_warm = timed(lambda m=m2, ls=layers: m.cost(ls))
            assert again == cost and m2.core.zigzag_calls == 0 and m2.allocation_searches == 0
            per_cand[name].update({
                "layers_cached_new_candidate_s": t_alloc, "allocation_search_s": m.allocation_seconds,
                "fully_cached_s": t_warm, "allocation_method": cost.allocation_method,
                "energy_uj": cost.energy_uj, "latency_cycles": cost.latency_cycles, "latency_ms": cost.latency_ms,
                "stage_energy_uj": [s.energy_uj for s in cost.stages],
                "stage_latency_cycles": [s.latency_cycles for s in cost.stages],
                "energy_breakdown_uj": {
                    k: sum(getattr(lc, k) for lc in cost.layers) * 1e-6
                    for k in ("compute_energy_pj", "dram_energy_pj", "weight_fill_energy_pj",
                              "transfer_energy_pj", "noc_energy_pj")},
                "latency_breakdown_cycles": {
                    op: sum(lc.latency_cycles for lc in cost.layers if lc.op == op)
                    for op in ("conv", "dwconv", "fc", "pool", "add")},
            })
        result["per_candidate"] = per_cand

        model = AcceleratorModel(cfg)
        # 3. alignment 32 vs 33
        align = {}
        for label, base in (("1x1 conv C=32 16x16", LayerSpec("a", "conv", 32, 32, 16, 16)),
                            ("block 3 project C=144 32x32", LayerSpec("b3", "conv", 32, 144, 32, 32))):
            rows = {}
            for k in (32, 33, 40, 64):
                lc = model.core.layer_cost(replace(base, k=k))
                rows[k] = {"latency_cycles": lc.latency_cycles, "energy_pj": lc.energy_pj,
                           "utilisation": lc.utilisation, "spatial_utilisation": lc.spatial_utilisation}
            rows["latency_ratio_33_32"] = rows[33]["latency_cycles"] / rows[32]["latency_cycles"]
            rows["energy_ratio_33_32"] = rows[33]["energy_pj"] / rows[32]["energy_pj"]
            align[label] = rows
        result["alignment_32_vs_33"] = align

        # 4. allocation methods
        alloc: dict[str, Any] = {}
        for name in ("static (K only)", "paper highlighted A,E,F,H,K"):
            layers = candidates[name]
            rows = {}
            for method in ("ga", "greedy", "single", "round-robin"):
                m = AcceleratorModel(replace(cfg, allocation=method, cache_dir=""))
                m.core = model.core
                c, dt = timed(lambda m=m, ls=layers: m.cost(ls))
                rows[method] = {"energy_uj": c.energy_uj, "latency_cycles": c.latency_cycles,
                                "edp_pj_cycles": c.energy_pj * c.latency_cycles, "search_s": dt,
                                "cores_used": len(set(c.allocation))}
            m = AcceleratorModel(replace(cfg, cache_dir="", ga_population=64, ga_generations=64))
            m.core = model.core
            c, dt = timed(lambda m=m, ls=layers: m.cost(ls))
            rows["ga 64x64 (paper's budget)"] = {"energy_uj": c.energy_uj, "latency_cycles": c.latency_cycles,
                                                "edp_pj_cycles": c.energy_pj * c.latency_cycles, "search_s": dt,
                                                "cores_used": len(set(c.allocation))}
            alloc[name] = rows
        result["allocation"] = alloc

        # 6. the paper's highlighted network with its published exit fractions
        static = model.cost(candidates["static (K only)"])
        hl = model.cost(candidates["paper highlighted A,E,F,H,K"])
        r = [0.106, 0.326, 0.117, 0.191, 0.260]
        d = dynamic_cost(hl.stage_energy_pj, hl.stage_latency_cycles, r)
        base = et_base(static.energy_pj, static.latency_cycles)
        result["paper_highlighted_network"] = {
            "exit_fractions": r, "et_avg_pj_cycles": d.et_avg, "et_base_pj_cycles": base,
            "normalised_cost": d.et_avg / base, "reduction": reduction(d.et_avg, base),
            "paper_normalised_cost": 0.41, "assumption": "one-layer heads (head types not published)",
        }
        # precision
        prec = {}
        for wb, ab in ((8, 8), (8, 4), (4, 8), (4, 4), (16, 16), (32, 32)):
            c = model.cost(mobilenetv2_ee("K", w_bits=wb, a_bits=ab))
            prec[f"{wb}/{ab}"] = {"energy_uj": c.energy_uj, "latency_cycles": c.latency_cycles}
        result["static_by_precision"] = prec

        # 5. checks
        if not args.quick:
            q8 = unique_queries([candidates["static (K only)"], candidates["paper highlighted A,E,F,H,K"]], cfg)
            core6 = CoreModel(replace(cfg, lpf_limit=6, cache_dir=tmp))
            diffs, t6 = [], 0.0
            for q in q8:
                a = model.core.query(q)
                b, dt = timed(lambda q=q: core6.query(q))
                t6 += dt
                diffs.append({"energy_rel": b.energy_pj / a.energy_pj - 1, "latency_rel": b.latency_cycles /
                              a.latency_cycles - 1})
            result["lpf_check"] = {
                "queries": len(q8), "lpf": [4, 6], "lpf6_total_s": t6,
                "identical": sum(1 for x in diffs if x["energy_rel"] == 0 and x["latency_rel"] == 0),
                "max_abs_energy_rel": max(abs(x["energy_rel"]) for x in diffs),
                "max_abs_latency_rel": max(abs(x["latency_rel"]) for x in diffs),
                "lpf6_better_energy": sum(1 for x in diffs if x["energy_rel"] < 0),
                "lpf6_better_latency": sum(1 for x in diffs if x["latency_rel"] < 0),
            }
            ms = AcceleratorModel(replace(cfg, spatial_mapping="search"))
            cs, dt = timed(lambda: ms.cost(candidates["static (K only)"]))
            result["mapping_check"] = {
                "static_fixed": {"energy_uj": static.energy_uj, "latency_cycles": static.latency_cycles,
                                 "core_energy_uj": sum(lc.compute_energy_pj for lc in static.layers) * 1e-6,
                                 "core_compute_cycles": sum(lc.compute_cycles for lc in static.layers)},
                "static_search": {"energy_uj": cs.energy_uj, "latency_cycles": cs.latency_cycles,
                                  "core_energy_uj": sum(lc.compute_energy_pj for lc in cs.layers) * 1e-6,
                                  "core_compute_cycles": sum(lc.compute_cycles for lc in cs.layers),
                                  "cold_s": dt, "zigzag_runs": ms.core.zigzag_calls},
            }

    # table
    pl = result["per_layer_query_s"]
    print(f"per-layer query ({pl['unique_queries']} unique): cold {pl['cold_zigzag']['median']:.3f} s median "
          f"(max {pl['cold_zigzag']['max']:.2f}), disk {1e3 * pl['warm_disk']['median']:.2f} ms, "
          f"memory {1e6 * pl['warm_memory']['median']:.1f} us")
    print(f"{'candidate':32s} {'layers':>6s} {'cold s':>7s} {'zz runs':>7s} {'new cand s':>10s} {'cached s':>8s} "
          f"{'E uJ':>8s} {'L cycles':>9s}")
    for name, row in per_cand.items():
        print(f"{name:32s} {row['layers']:6d} {row['cold_s']:7.1f} {row['cold_zigzag_runs']:7d} "
              f"{row['layers_cached_new_candidate_s']:10.2f} {row['fully_cached_s']:8.3f} {row['energy_uj']:8.1f} "
              f"{row['latency_cycles']:9.0f}")
    for label, rows in result["alignment_32_vs_33"].items():
        print(f"alignment {label}: 32 ch {rows[32]['latency_cycles']:.0f} cycles, "
              f"33 ch {rows[33]['latency_cycles']:.0f} (x{rows['latency_ratio_33_32']:.3f}), "
              f"energy x{rows['energy_ratio_33_32']:.3f}, utilisation "
              f"{rows[32]['utilisation']:.3f} -> {rows[33]['utilisation']:.3f}")
    for name, rows in result["allocation"].items():
        print(f"allocation {name}: " + ", ".join(f"{k} EDP {v['edp_pj_cycles']:.3e} ({v['search_s']:.2f} s)"
                                                   for k, v in rows.items()))
    ph = result["paper_highlighted_network"]
    print(f"paper's highlighted network with its exit fractions: ET_avg/ET_base = {ph['normalised_cost']:.3f} "
          f"(paper ~0.41)")
    if "lpf_check" in result:
        lc = result["lpf_check"]
        print(f"lpf 4 vs 6: {lc['identical']}/{lc['queries']} identical, max |rel diff| energy "
              f"{lc['max_abs_energy_rel']:.2e} latency {lc['max_abs_latency_rel']:.2e} "
              f"(lpf 6: {lc['lpf6_total_s']:.0f} s)")
        mc = result["mapping_check"]
        print(f"static network fixed vs searched mapping: E {mc['static_fixed']['energy_uj']:.1f} vs "
              f"{mc['static_search']['energy_uj']:.1f} uJ, L {mc['static_fixed']['latency_cycles']:.0f} vs "
              f"{mc['static_search']['latency_cycles']:.0f} cycles")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
