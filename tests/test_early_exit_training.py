"""Cached early-exit training: each backbone and exit head is trained once, per-exit outputs are
reused by every candidate (and by other processes through the cache folder), training is
deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalp_moo.data.classification import ClassificationDataConfig, open_classification
from dalp_moo.errors import ConfigError
from dalp_moo.training.early_exit import EarlyExitTrainConfig, ExitBank, joint_finetune

TINY = EarlyExitTrainConfig(epochs=1, qat_epochs=1, head_epochs=2, batch_size=16, head_batch_size=16,
                            threads=1, eval_batch_size=64)


@pytest.fixture(scope="module")
def data():
    return open_classification(ClassificationDataConfig(source="chips", n_samples=60))


def test_second_candidate_trains_nothing_new(data, tmp_path):
    bank = ExitBank(data, TINY, width=0.25, cache_dir=tmp_path)
    first = bank.statistics((2, 10), ("linear", "linear"), 8, 8, 0.9, "test")
    assert (bank.log.backbones, bank.log.heads, bank.log.feature_sets) == (2, 2, 1)  # FP32 + 8-bit QAT
    assert sum(first.exit_fractions) == pytest.approx(1.0) and first.samples == len(data.test)
    # other thresholds, splits and subsets of the same heads: nothing is trained
    bank.statistics((2, 10), ("linear", "linear"), 8, 8, 0.6, "calib")
    bank.statistics((10,), ("linear",), 8, 8, 0.6, "test")
    assert (bank.log.backbones, bank.log.heads) == (2, 2)
    # one new head: exactly one training, on the cached features
    bank.statistics((2, 5, 10), ("linear", "mlp", "linear"), 8, 8, 0.9, "test")
    assert (bank.log.backbones, bank.log.heads, bank.log.feature_sets) == (2, 3, 1)
    # another exit precision on the same backbone: new heads only
    bank.statistics((2, 10), ("linear", "linear"), 8, 4, 0.9, "test")
    assert (bank.log.backbones, bank.log.heads, bank.log.feature_sets) == (2, 5, 1)

    # another process on the same cache folder loads everything and trains nothing
    other = ExitBank(data, TINY, width=0.25, cache_dir=tmp_path)
    again = other.statistics((2, 5, 10), ("linear", "mlp", "linear"), 8, 8, 0.9, "test")
    assert (other.log.backbones, other.log.heads, other.log.feature_sets) == (0, 0, 0)
    assert again == bank.statistics((2, 5, 10), ("linear", "mlp", "linear"), 8, 8, 0.9, "test")
    # the cached QAT backbone reloads to the same function
    x = torch.from_numpy(data.test.x[:4])
    with torch.no_grad():
        for a, b in zip(bank.backbone(8)(x), other.backbone(8)(x), strict=True):
            assert torch.equal(a, b)
    assert not list(tmp_path.glob("**/*.tmp"))  # atomic writes leave no temporaries


def test_training_is_deterministic_and_16_bit_is_fp16(data):
    a = ExitBank(data, TINY, width=0.25, cache_dir="")
    b = ExitBank(data, TINY, width=0.25, cache_dir="")
    pa = a.head(16, 16, 4, "linear")
    pb = b.head(16, 16, 4, "linear")
    assert np.array_equal(pa["test"], pb["test"]) and np.array_equal(pa["calib"], pb["calib"])
    # the 16-bit backbone is the FP32 one deployed as FP16: its pooled features are FP16 values
    f16 = a.features(16)["test"][4]
    assert np.array_equal(f16, f16.astype(np.float16).astype(np.float32))
    assert not np.array_equal(f16, a.features(32)["test"][4])
    assert a.log.backbones == 1  # 16 bit reuses the FP32 backbone


def test_joint_finetune_remeasures(data):
    bank = ExitBank(data, TINY, width=0.25, cache_dir="")
    before = bank.statistics((3, 10), ("linear", "linear"), 32, 8, 0.8, "test")
    result = joint_finetune(bank, (3, 10), ("linear", "linear"), 32, 8, 0.8)
    assert result.test.samples == before.samples and sum(result.test.exit_fractions) == pytest.approx(1.0)
    assert result.seconds > 0


def test_train_config_errors():
    with pytest.raises(ConfigError, match="train.profile"):
        EarlyExitTrainConfig(profile="fp8")
    with pytest.raises(ConfigError, match="train.head_epochs"):
        EarlyExitTrainConfig(head_epochs=0)
    with pytest.raises(ConfigError, match="train.device"):
        EarlyExitTrainConfig(device="gpu")


def test_device_auto_trains_where_torch_can(data, tmp_path):
    bank = ExitBank(data, EarlyExitTrainConfig(device="auto", epochs=1, head_epochs=1), width=0.25)
    assert bank.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            ExitBank(data, EarlyExitTrainConfig(device="cuda"), width=0.25)


def test_concurrent_banks_train_each_item_once(data, tmp_path):
    """Two banks on one cache folder asking for the same head at once (as two Dask workers
    would): the file lock makes one train it and the other load it."""
    import threading

    cfg = EarlyExitTrainConfig(epochs=1, qat_epochs=0, head_epochs=1, batch_size=16, threads=1)
    banks = [ExitBank(data, cfg, width=0.25, cache_dir=tmp_path) for _ in range(2)]
    results: list = [None, None]

    def work(i: int) -> None:
        results[i] = banks[i].head(32, 32, 6, "linear")["test"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(b.log.backbones for b in banks) == 1 and sum(b.log.heads for b in banks) == 1
    assert np.array_equal(results[0], results[1])
