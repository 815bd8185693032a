"""The early-exit search space: genome layout, canonical IDs, repair, configuration errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dalp_moo.errors import ConfigError
from dalp_moo.space.early_exit import EarlyExitSpace, EarlyExitSpaceConfig


def test_layout_and_decode():
    space = EarlyExitSpace()
    assert space.n_var == 10 + 11 + 3 and len(space.gene_names()) == space.n_var
    assert space.thresholds[0] == 0.5 and space.thresholds[-1] == 0.99 and len(space.thresholds) == 50
    g = space.encode("AEFH", heads=("linear", "mlp", "linear", "mlp", "linear"), threshold=0.9,
                     backbone_bits=8, exit_bits=4)
    arch = space.decode(g)
    assert arch.letters == "AEFHK" and arch.positions == (0, 4, 5, 7, 10)
    assert arch.heads == ("linear", "mlp", "linear", "mlp", "linear")
    assert arch.threshold == 0.9 and arch.precision == "8/4"
    assert "E:mlp" in arch.describe() and "t=0.90" in arch.describe()


def test_canonical_ignores_genes_of_absent_exits():
    space = EarlyExitSpace()
    g = space.encode("CG", threshold=0.8)
    other = g.copy()
    other[space.head_gene0 + 0] = 1  # head type of exit A, which is absent
    other[space.head_gene0 + 9] = 1  # head type of exit J, absent
    assert space.decode(other).arch_id == space.decode(g).arch_id
    assert np.array_equal(space.canonical(other), space.canonical(g))
    present = g.copy()
    present[space.head_gene0 + 2] = 1  # head type of exit C, present
    assert space.decode(present).arch_id != space.decode(g).arch_id
    # the final exit's head always matters
    final = g.copy()
    final[space.head_gene0 + 10] = 1
    assert space.decode(final).arch_id != space.decode(g).arch_id


def test_threshold_ignored_without_early_exits():
    space = EarlyExitSpace(EarlyExitSpaceConfig(min_exits=1))
    a, b = space.encode("K", threshold=0.6), space.encode("K", threshold=0.95)
    assert space.decode(a).arch_id == space.decode(b).arch_id
    assert space.decode(space.encode("BK", threshold=0.6)).arch_id != space.decode(
        space.encode("BK", threshold=0.95)).arch_id


def test_repair_brings_exit_count_into_bounds():
    space = EarlyExitSpace(EarlyExitSpaceConfig(min_exits=3, max_exits=5))
    all_on = np.ones(space.n_var, dtype=int)
    assert space.decode(space.repair(all_on)).n_exits == 5
    none = np.zeros(space.n_var, dtype=int)
    assert space.decode(space.repair(none)).n_exits == 3
    X = space.sample(200, np.random.default_rng(0))
    counts = {space.decode(x).n_exits for x in X}
    assert counts <= {3, 4, 5} and len(counts) == 3
    assert (X >= space.xl).all() and (X <= space.xu).all()


def test_restricted_choices_and_pickling():
    space = EarlyExitSpace(EarlyExitSpaceConfig(backbone_bits="8", exit_bits="8,4", head_types="linear"))
    assert space.xu[space.backbone_gene] == 0 and space.xu[space.exit_gene] == 1
    assert (space.xu[space.head_gene0:space.head_gene0 + 11] == 0).all()
    arch = space.decode(space.sample(1, np.random.default_rng(1))[0])
    assert arch.backbone_bits == 8 and set(arch.heads) == {"linear"}
    clone = pickle.loads(pickle.dumps(space))
    g = space.sample(3, np.random.default_rng(2))
    assert np.array_equal(clone.canonical_batch(g), space.canonical_batch(g))
    with pytest.raises(ConfigError, match="not allowed"):
        space.encode("D", backbone_bits=16)


@pytest.mark.parametrize("values, match", [
    ({"backbone_bits": "8,12"}, "space.backbone_bits"),
    ({"head_types": "linear,conv"}, "space.head_types"),
    ({"threshold_min": 0.9, "threshold_max": 0.8}, "threshold_min"),
    ({"min_exits": 0}, "min_exits"),
    ({"exit_bits": "8,8"}, "repeats"),
])
def test_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        EarlyExitSpaceConfig(**values)
