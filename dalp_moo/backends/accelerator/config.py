"""Configuration of the modelled accelerator (frozen; unknown keys are rejected).

Defaults: the Edge-TPU-like quad-core system of the early-exit co-design paper. Four compute
cores (each an 8x8x4x4 MAC array, 0.04 pJ/MAC; 0.01/0.02 pJ weight/output register files;
32 KiB weight SRAM with a 512-bit port, 22.9 pJ read / 52.01 pJ write; 2 MiB activation SRAM
with a 2048-bit port, 416.16 pJ read / 378.4 pJ write) in a 2x2 mesh, one pooling core (3x3
units, 0.1 pJ/op), one SIMD core (64 lanes, 0.1 pJ/op), DRAM (64 bit/cycle, 700 pJ read /
750 pJ write per 64-bit access), a 32 bit/cycle network-on-chip whose energy is not counted
(``noc_pj_per_bit = 0``) as in the paper. The clock (500 MHz) is an assumption of this project:
it only converts cycles to milliseconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from dalp_moo.errors import ConfigError

SPATIAL_MAPPINGS = ("fixed", "search")
ZIGZAG_OPTS = ("EDP", "energy", "latency")
ALLOCATIONS = ("ga", "greedy", "round-robin", "single")
ALLOCATION_OBJECTIVES = ("edp", "latency", "energy")


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"config value accelerator.{key}: {message}")


@dataclass(frozen=True)
class AcceleratorConfig:
    """The modelled multi-core accelerator and how its cost model searches (units in names)."""

    clock_mhz: float = 500.0  #: clock of all cores and the NoC (MHz; converts cycles to ms)
    array_dims: str = "8x8x4x4"  #: MAC array D1xD2xD3xD4 (fixed mapping: K x C x OX x OY)
    mac_pj: float = 0.04  #: energy of one MAC (pJ), the same at every precision
    weight_rf_pj: float = 0.01  #: weight register file access (pJ)
    output_rf_pj: float = 0.02  #: output (partial-sum) register file access (pJ)
    weight_sram_kib: int = 32  #: weight SRAM per compute core (KiB)
    weight_sram_port_bits: int = 512  #: weight SRAM port width (bits per access)
    weight_sram_read_pj: float = 22.9  #: per port-wide read (pJ)
    weight_sram_write_pj: float = 52.01  #: per port-wide write (pJ)
    act_sram_kib: int = 2048  #: activation SRAM per compute core (KiB)
    act_sram_port_bits: int = 2048  #: activation SRAM port width (bits per access)
    act_sram_read_pj: float = 416.16  #: per port-wide read (pJ)
    act_sram_write_pj: float = 378.4  #: per port-wide write (pJ)
    dram_port_bits: int = 64  #: DRAM bandwidth (bit/cycle)
    dram_read_pj: float = 700.0  #: per DRAM-port-wide access (pJ)
    dram_write_pj: float = 750.0  #: per DRAM-port-wide write (pJ)
    noc_bits: int = 32  #: NoC link bandwidth (bit/cycle)
    noc_hop_cycles: int = 1  #: router latency per hop (cycles)
    noc_pj_per_bit: float = 0.0  #: NoC energy per bit and hop (pJ); 0 = not counted (paper)
    compute_cores: int = 4  #: identical compute cores in a mesh
    mesh_columns: int = 2  #: columns of the compute-core mesh (2x2 for 4 cores)
    pool_units: int = 9  #: pooling core: parallel units (3x3), one operation per cycle each
    pool_pj_per_op: float = 0.1  #: energy of one pooling operation (pJ)
    simd_lanes: int = 64  #: SIMD core lanes (element-wise add), one operation per cycle each
    simd_pj_per_op: float = 0.1  #: energy of one SIMD operation (pJ)
    spatial_mapping: str = "fixed"  #: 'fixed' (K/C/OX/OY, depthwise G/FX/OX/OY) or 'search' (ZigZag)
    spatial_mappings: int = 3  #: spatial mappings ZigZag generates per layer in 'search' mode
    zigzag_opt: str = "EDP"  #: criterion of ZigZag's mapping search: EDP, energy or latency
    lpf_limit: int = 4  #: ZigZag LOMA loop-prime-factor limit (speed vs search breadth)
    allocation: str = "ga"  #: layer-to-core allocation: ga (greedy + NSGA-II), greedy, round-robin, single
    allocation_objective: str = "edp"  #: pick the allocation minimising edp, latency or energy
    ga_population: int = 16  #: inner NSGA-II population (the paper: 64)
    ga_generations: int = 8  #: inner NSGA-II generations (the paper: 64)
    seed: int = 0  #: seed of the allocation search
    cache_dir: str = ""  #: on-disk cache of per-layer ZigZag results and allocations ('' = memory only)

    def __post_init__(self) -> None:
        _check(self.clock_mhz > 0, "clock_mhz", "must be > 0")
        try:
            dims = self.dims
        except ValueError:
            raise ConfigError(f"config value accelerator.array_dims: {self.array_dims!r} is not like 8x8x4x4") from None
        _check(len(dims) == 4 and all(d >= 1 for d in dims), "array_dims",
               f"{self.array_dims!r} needs four positive sizes like 8x8x4x4")
        for key in ("mac_pj", "weight_rf_pj", "output_rf_pj", "weight_sram_read_pj", "weight_sram_write_pj",
                    "act_sram_read_pj", "act_sram_write_pj", "dram_read_pj", "dram_write_pj", "noc_pj_per_bit",
                    "pool_pj_per_op", "simd_pj_per_op"):
            _check(getattr(self, key) >= 0, key, "must be >= 0")
        for key in ("weight_sram_kib", "weight_sram_port_bits", "act_sram_kib", "act_sram_port_bits",
                    "dram_port_bits", "noc_bits", "compute_cores", "mesh_columns", "pool_units", "simd_lanes",
                    "spatial_mappings", "lpf_limit", "ga_population", "ga_generations"):
            _check(getattr(self, key) >= 1, key, "must be >= 1")
        _check(self.noc_hop_cycles >= 0, "noc_hop_cycles", "must be >= 0")
        _check(self.lpf_limit <= 12, "lpf_limit", "must be <= 12")
        _check(self.spatial_mapping in SPATIAL_MAPPINGS, "spatial_mapping",
               f"{self.spatial_mapping!r} is not one of {', '.join(SPATIAL_MAPPINGS)}")
        _check(self.zigzag_opt in ZIGZAG_OPTS, "zigzag_opt",
               f"{self.zigzag_opt!r} is not one of {', '.join(ZIGZAG_OPTS)}")
        _check(self.allocation in ALLOCATIONS, "allocation",
               f"{self.allocation!r} is not one of {', '.join(ALLOCATIONS)}")
        _check(self.allocation_objective in ALLOCATION_OBJECTIVES, "allocation_objective",
               f"{self.allocation_objective!r} is not one of {', '.join(ALLOCATION_OBJECTIVES)}")

    @property
    def dims(self) -> tuple[int, ...]:
        """MAC array dimensions (D1, D2, D3, D4)."""
        return tuple(int(p) for p in self.array_dims.lower().split("x"))

    @property
    def array_macs(self) -> int:
        """MACs per cycle of one compute core."""
        out = 1
        for d in self.dims:
            out *= d
        return out

    @property
    def weight_sram_bits(self) -> int:
        return self.weight_sram_kib * 1024 * 8

    @property
    def act_sram_bits(self) -> int:
        return self.act_sram_kib * 1024 * 8

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AcceleratorConfig:
        """Build from a mapping, rejecting unknown keys and wrong types with one readable line."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown config key accelerator.{key!r}{hint}")
            default = getattr(cls, key)
            typ = type(default)
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not typ:
                raise ConfigError(f"config value accelerator.{key}: expected {typ.__name__}, "
                                  f"got {type(value).__name__} {value!r}")
            kwargs[key] = value
        return cls(**kwargs)

    def core_hash(self) -> str:
        """Hash of the compute-core and mapping-search settings (what ZigZag results depend on)."""
        keys = ("array_dims", "mac_pj", "weight_rf_pj", "output_rf_pj", "weight_sram_kib", "weight_sram_port_bits",
                "weight_sram_read_pj", "weight_sram_write_pj", "act_sram_kib", "act_sram_port_bits",
                "act_sram_read_pj", "act_sram_write_pj", "spatial_mapping", "spatial_mappings", "zigzag_opt",
                "lpf_limit")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def system_hash(self) -> str:
        """Hash of everything that changes a candidate's system cost (not the cache folder)."""
        d = self.to_dict()
        d.pop("cache_dir")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
