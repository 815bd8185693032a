import matplotlib
import pytest

from dalp_moo.results.analysis import compare_runs, load_run
from dalp_moo.search import run_search
from tests.conftest import tiny_config

matplotlib.use("Agg")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("analysis")
    run_search(tiny_config(search={"population": 3, "generations": 1}, train={"regime": "dalp"}), base / "nsga2")
    run_search(tiny_config(search={"population": 3, "generations": 1, "algorithm": "random", "seed": 1}),
               base / "random")
    return base / "nsga2", base / "random"


def test_load_run_flags_front_and_gap(two_runs):
    df = load_run(two_runs[0])
    assert len(df) == 3 and df.on_front.any()
    assert df.dalp_miou.notna().all() and df.gap.notna().all()


def test_compare_runs_common_reference(two_runs):
    table = compare_runs(list(two_runs))
    assert list(table.algorithm) == ["nsga2", "random"]
    assert (table.hypervolume_common_reference >= 0).all()
    # same config and backend: the runs' fixed reference points agree, so both hypervolumes agree
    assert table.hypervolume.tolist() == pytest.approx(table.hypervolume_common_reference.tolist())

