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



def test_plot_regimes_names_the_format_and_says_emulated(two_runs):
    from dalp_moo.results.analysis import plot_regimes

    df = load_run(two_runs[0])
    assert set(df.number_format) == {"FP16"}  # the tiny config's myriadx profile
    fig = plot_regimes(df)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "mIoU of the FP16 deployment (fraction, emulated)"
    labels = ax.get_legend_handles_labels()[1]
    assert "post-training FP16 (ptq)" in labels and "deployment-aligned (dalp)" in labels
    # a bf16 run measured by the OpenVINO runtime: the same figure says so
    measured = df.assign(emulated=False, number_format="bf16")
    assert plot_regimes(measured).axes[0].get_ylabel() == "mIoU of the bf16 deployment (fraction, measured)"
