import numpy as np
import pytest
import torch

from dalp_moo.config import SpaceConfig
from dalp_moo.model import ParamCounter, build_model, count_params
from dalp_moo.space import BLOCKS, SearchSpace
from dalp_moo.space.genome import GENES_PER_UNIT

CAP = 100_000


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace(SpaceConfig(), param_cap=CAP, count=ParamCounter(4))


def test_genome_bounds_and_length(space):
    assert space.n_var == 1 + 5 * GENES_PER_UNIT
    assert len(space.gene_names()) == space.n_var
    X = space.sample(50, np.random.default_rng(0))
    assert (X >= space.xl).all() and (X <= space.xu).all()


def test_round_trip_decode_canonical(space):
    rng = np.random.default_rng(1)
    for x in space.sample(30, rng):
        arch = space.decode(x)
        assert np.array_equal(np.array(arch.genome), space.canonical(x))
        again = space.decode(np.array(arch.genome))
        assert again == arch and again.arch_id == arch.arch_id
        assert len(arch.units) == space.n_units(x)


def test_canonical_id_ignores_unused_genes(space):
    g = space.canonical(space.sample(1, np.random.default_rng(2))[0])
    g[0] = 0  # 3 units: units 3 and 4 are switched off
    for i in range(space.n_var):
        g[1 + 0 * GENES_PER_UNIT] = BLOCKS.index("conv_bn_act")
    base_id = space.decode(g).arch_id
    changed = g.copy()
    changed[1 + 4 * GENES_PER_UNIT: 1 + 5 * GENES_PER_UNIT] = space.xu[1 + 4 * GENES_PER_UNIT: 1 + 5 * GENES_PER_UNIT]
    assert space.decode(changed).arch_id == base_id
    unused_expansion = g.copy()
    unused_expansion[space.expansion_gene(0)] = 3  # conv_bn_act does not use expansion
    assert space.decode(unused_expansion).arch_id == base_id
    used = g.copy()
    used[space.channel_gene(0)] = (g[space.channel_gene(0)] + 1) % (space.xu[space.channel_gene(0)] + 1)
    assert space.decode(used).arch_id != base_id


@pytest.mark.parametrize("seed", range(4))
def test_param_count_equals_torch(space, seed):
    for x in space.sample(5, np.random.default_rng(seed)):
        arch = space.decode(x)
        model = build_model(arch, 4, 2)
        assert count_params(arch, 4) == sum(p.numel() for p in model.parameters())


def test_every_block_type_runs_forward_and_backward(space):
    g = space.canonical(np.zeros(space.n_var, dtype=int))
    for b in range(len(BLOCKS)):
        g[1] = b
        model = build_model(space.decode(g), 4, 2)
        x = torch.rand(2, 4, 32, 32)
        y = model(x)
        assert y.shape == (2, 2, 32, 32)
        y.mean().backward()


def test_repair_fits_cap_and_keeps_feasible_genomes(space):
    rng = np.random.default_rng(3)
    over = 0
    for x in space.sample(40, rng):
        before = count_params(space.decode(x), 4)
        r = space.repair(x)
        after = count_params(space.decode(r), 4)
        assert after <= CAP
        assert space.static_metrics(r) == {"params": after}
        if before <= CAP:
            assert np.array_equal(r, space.canonical(x))
        else:
            over += 1
    assert over > 0  # the sample did exercise the shrinking path


def test_repair_clips_out_of_bounds(space):
    x = np.full(space.n_var, 99)
    r = space.repair(x)
    assert (r <= space.xu).all() and (r >= space.xl).all()


def test_small_cap_repair_drops_units():
    space = SearchSpace(SpaceConfig(), param_cap=8000, count=ParamCounter(4))
    x = space.xu.copy()
    r = space.repair(x)
    assert count_params(space.decode(r), 4) <= 8000
    assert space.n_units(r) < 5


def test_input_norm_identity_follows_loaded_buffers(space):
    from dalp_moo.model import InputNorm

    arch = space.decode(np.zeros(space.n_var, dtype=int))
    scaled = build_model(arch, 4, 2, InputNorm([0.0] * 4, [0.5] * 4))
    raw = build_model(arch, 4, 2)
    assert raw.norm.identity and not scaled.norm.identity
    raw.load_state_dict(scaled.state_dict())
    assert not raw.norm.identity
    x = torch.rand(1, 4, 32, 32) * 100
    torch.testing.assert_close(raw.eval()(x), scaled.eval()(x))


def test_space_without_counter_only_canonicalises():
    space = SearchSpace(SpaceConfig())
    x = space.xu.copy()
    assert np.array_equal(space.repair(x), space.canonical(x))
    assert space.static_metrics(x) == {}


def test_space_satisfies_the_protocol(space):
    import pickle

    from dalp_moo.application import SearchSpaceProtocol

    assert isinstance(space, SearchSpaceProtocol)
    clone = pickle.loads(pickle.dumps(space))
    x = space.xu.copy()
    assert np.array_equal(clone.repair(x), space.repair(x))
