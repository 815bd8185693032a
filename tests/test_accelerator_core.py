"""The ZigZag-costed compute core: agreement with ZigZag's own API, determinism, alignment,
precision, weight tiling and the per-layer on-disk cache."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import yaml

from dalp_moo.backends.accelerator import zigzag_core
from dalp_moo.backends.accelerator.cache import DiskCache, payload_hash
from dalp_moo.backends.accelerator.config import AcceleratorConfig
from dalp_moo.backends.accelerator.core import CoreModel, plan_tiles
from dalp_moo.backends.accelerator.workload import LayerSpec
from dalp_moo.errors import BackendError, ConfigError

pytest.importorskip("zigzag", reason="zigzag-dse (Python >= 3.11) not installed")

CONV32 = LayerSpec("conv", "conv", 32, 32, 16, 16)
DW = LayerSpec("dw", "dwconv", 48, 48, 16, 16, 3, 3, groups=48)


@pytest.fixture(scope="module")
def shared_core(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CoreModel:
    """A core model on the persistent pytest cache (ZigZag runs once per layer across runs)."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("dalp_accelerator") if cache is not None else tmp_path_factory.mktemp("accel")
    return CoreModel(AcceleratorConfig(cache_dir=str(folder)))


class CountingRun:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.real = zigzag_core.run_query
        monkeypatch.setattr(zigzag_core, "run_query", self)

    def __call__(self, cfg, q):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.real(cfg, q)


def test_core_description_is_zigzags_edge_tpu_core_at_8_bit() -> None:
    """At 8 bit the generated core equals ZigZag's shipped Edge-TPU-like core without DRAM."""
    import zigzag

    shipped = yaml.safe_load(
        (Path(zigzag.__file__).parent / "inputs" / "hardware" / "edge_tpu_like.yaml").read_text())
    ours = zigzag_core.accelerator_description(AcceleratorConfig(), w_bits=8, psum_bits=16)
    assert ours["operational_array"]["sizes"] == shipped["operational_array"]["sizes"] == [8, 8, 4, 4]
    assert ours["operational_array"]["unit_energy"] == shipped["operational_array"]["unit_energy"]
    pairs = {"rf_weight": "rf_1B", "rf_output": "rf_2B", "sram_weight": "sram_32KB", "sram_activation": "sram_2MB"}
    for mine, theirs in pairs.items():
        a, b = ours["memories"][mine], shipped["memories"][theirs]
        for key in ("size", "r_cost", "w_cost", "operands", "served_dimensions"):
            assert a[key] == pytest.approx(b[key]) if isinstance(b[key], float) else a[key] == b[key], (mine, key)
        assert [(p["type"], p["bandwidth_max"], p["allocation"]) for p in a["ports"]] == \
               [(p["type"], p["bandwidth_max"], p["allocation"]) for p in b["ports"]]
    assert "dram" not in ours["memories"]  # DRAM is costed by the system model


@pytest.mark.parametrize("spec", [CONV32, DW], ids=["conv", "dwconv"])
def test_cost_matches_zigzag_api(spec: LayerSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's ZigZag pipeline gives exactly what ZigZag's public API gives for the same
    layer; neither leaves ./outputs, logging changes or MPLCONFIGDIR behind."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    root = logging.getLogger()
    before = (root.level, list(root.handlers), logging.getLogger("dalp_moo").level)
    cfg = AcceleratorConfig()
    (q, _, _), = plan_tiles(spec, cfg)
    ours = zigzag_core.run_query(cfg, q)
    energy, latency = zigzag_core.reference_query(cfg, q)
    assert ours.energy_pj == pytest.approx(energy, rel=1e-9)
    assert ours.latency_cycles == pytest.approx(latency, rel=1e-9)
    assert ours.energy_pj > ours.mac_energy_pj == pytest.approx(q.macs * cfg.mac_pj)
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder in the working directory
    assert (root.level, list(root.handlers), logging.getLogger("dalp_moo").level) == before
    assert "MPLCONFIGDIR" not in os.environ


def test_depthwise_mapping_of_its_own() -> None:
    """Depthwise layers unroll channels and the kernel, not the dense K x C mapping."""
    cfg = AcceleratorConfig()
    (q, _, _), = plan_tiles(DW, cfg)
    assert q.kind == "depthwise" and q.g == 48 and q.k == q.c == 1
    assert zigzag_core.spatial_mapping(cfg, q) == {"D1": ["G, 8"], "D2": ["FX, 3"], "D3": ["OX, 4"],
                                                   "D4": ["OY, 4"]}


def test_depthwise_utilisation_far_above_dense_mapping(shared_core: CoreModel) -> None:
    lc = shared_core.layer_cost(DW)
    assert lc.spatial_utilisation == pytest.approx(8 * 3 * 4 * 4 / 1024)
    assert lc.utilisation > 0.3  # the dense mapping gives ~0.1-1.6 %


def test_deterministic() -> None:
    a = CoreModel(AcceleratorConfig()).layer_cost(CONV32)
    b = CoreModel(AcceleratorConfig()).layer_cost(CONV32)
    assert a.tiles[0].result == b.tiles[0].result


def test_alignment_33_vs_32_output_channels(shared_core: CoreModel) -> None:
    c32 = shared_core.layer_cost(CONV32)
    c33 = shared_core.layer_cost(LayerSpec("conv33", "conv", 33, 32, 16, 16))
    c40 = shared_core.layer_cost(LayerSpec("conv40", "conv", 40, 32, 16, 16))
    # K is unrolled by 8: 33 channels need 5 passes like 40, 32 need 4
    assert c33.latency_cycles > 1.2 * c32.latency_cycles
    assert c33.latency_cycles == pytest.approx(c40.latency_cycles, rel=0.02)
    assert c33.utilisation < 0.9 * c32.utilisation
    # energy grows much less than latency
    assert c33.energy_pj / c32.energy_pj < c33.latency_cycles / c32.latency_cycles


def test_precision_changes_memory_traffic(shared_core: CoreModel) -> None:
    """Lower precision: fewer SRAM accesses (less energy); 16 and 32 bit get valid mappings."""
    costs = {}
    for bits in (4, 8, 16, 32):
        costs[bits] = shared_core.layer_cost(LayerSpec("p", "conv", 32, 32, 16, 16, w_bits=bits, a_bits=bits))
    assert costs[4].energy_pj < costs[8].energy_pj < costs[16].energy_pj < costs[32].energy_pj
    mac = costs[8].tiles[0].result.mac_energy_pj
    assert all(c.tiles[0].result.mac_energy_pj == pytest.approx(mac) for c in costs.values())  # MAC energy fixed
    assert costs[16].tiles[0].query.psum_bits == 32 and costs[4].tiles[0].query.psum_bits == 8


def test_cache_reuse_skips_zigzag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingRun(monkeypatch)
    cfg = AcceleratorConfig(cache_dir=str(tmp_path))
    first = CoreModel(cfg).layer_cost(CONV32)
    assert counter.calls == 1
    again = CoreModel(cfg).layer_cost(CONV32)  # new process-like model, same cache folder
    assert counter.calls == 1
    assert again.tiles[0].result == first.tiles[0].result
    renamed = LayerSpec("other-name", "conv", 32, 32, 16, 16)  # the name is not part of the key
    CoreModel(cfg).layer_cost(renamed)
    assert counter.calls == 1
    entries = list((tmp_path / "zigzag").glob("*.json"))
    assert len(entries) == 1 and not list((tmp_path / "zigzag").glob(".tmp-*"))
    entries[0].write_text("{corrupt")  # a damaged entry is recomputed, not fatal
    CoreModel(cfg).layer_cost(CONV32)
    assert counter.calls == 2
    assert json.loads(entries[0].read_text())["value"]["energy_pj"] == first.energy_pj


def test_cache_key_has_precision_core_and_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = AcceleratorConfig()
    (q8, _, _), = plan_tiles(CONV32, cfg)
    (q4, _, _), = plan_tiles(LayerSpec("c", "conv", 32, 32, 16, 16, w_bits=4, a_bits=4), cfg)
    keys = {
        "base": zigzag_core.query_payload(cfg, q8),
        "precision": zigzag_core.query_payload(cfg, q4),
        "core": zigzag_core.query_payload(AcceleratorConfig(mac_pj=0.05), q8),
        "mapping": zigzag_core.query_payload(AcceleratorConfig(spatial_mapping="search"), q8),
    }
    monkeypatch.setattr(zigzag_core, "MODEL_VERSION", "test")
    keys["version"] = zigzag_core.query_payload(cfg, q8)
    assert len({payload_hash(k) for k in keys.values()}) == len(keys)  # every change is a new entry
    cache = DiskCache(tmp_path)
    cache.put("zigzag", keys["base"], {"x": 1})
    assert cache.get("zigzag", keys["base"]) == {"x": 1}
    assert all(cache.get("zigzag", keys[k]) is None for k in ("precision", "core", "mapping", "version"))


def test_weight_tiling_fits_the_weight_sram() -> None:
    cfg = AcceleratorConfig()
    cap = cfg.weight_sram_bits
    small = plan_tiles(CONV32, cfg)
    assert len(small) == 1
    big = LayerSpec("big", "conv", 960, 160, 8, 8)  # 150 KiB of 8-bit weights
    tiles = plan_tiles(big, cfg)
    assert len(tiles) > 1 and all(w <= cap // 2 for _, w, _ in tiles)
    assert sum(w for _, w, _ in tiles) == big.weight_bits
    assert sum(q.macs for q, _, _ in tiles) == big.macs
    assert len({q for q, _, _ in tiles}) <= 2  # equal tiles are one ZigZag query
    fc32 = LayerSpec("fc", "fc", 10, 5120, w_bits=32, a_bits=32)  # one output row exceeds half the SRAM
    tiles = plan_tiles(fc32, cfg)
    assert all(w <= cap // 2 for _, w, _ in tiles) and sum(w for _, w, _ in tiles) == fc32.weight_bits
    assert any(reads for _, _, reads in tiles)  # a split reduction reads partial sums back
    assert {q.o_bits for q, _, _ in tiles} == {32}


def test_unsupported_and_bad_input() -> None:
    with pytest.raises(BackendError, match="dwconv needs groups"):
        LayerSpec("x", "dwconv", 8, 16, groups=8)
    with pytest.raises(BackendError, match="op 'deconv'"):
        LayerSpec("x", "deconv", 8, 8)
    with pytest.raises(BackendError, match="w_bits"):
        LayerSpec("x", "conv", 8, 8, w_bits=0)
    with pytest.raises(BackendError, match="compute core"):
        plan_tiles(LayerSpec("p", "pool", 8, 8), AcceleratorConfig())
    with pytest.raises(ConfigError, match="unknown config key accelerator.'mac_pJ'.*mac_pj"):
        AcceleratorConfig.from_dict({"mac_pJ": 0.1})
    with pytest.raises(ConfigError, match="array_dims"):
        AcceleratorConfig(array_dims="8x8")
    with pytest.raises(ConfigError, match="expected int"):
        AcceleratorConfig.from_dict({"lpf_limit": "4"})
    assert AcceleratorConfig.from_dict({"mac_pj": 1}).mac_pj == 1.0
