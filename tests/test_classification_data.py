"""Classification data of the early-exit application: CIFAR-10 loader validation (restricted
unpickling), scikit-learn digits, the embedded chip set."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from dalp_moo.data.classification import (
    CIFAR_BATCHES,
    ClassificationDataConfig,
    load_cifar10,
    load_digits_data,
    open_classification,
    read_cifar_batch,
)
from dalp_moo.errors import ConfigError, DataError


def _batch(n: int = 20, seed: int = 0, labels: list[int] | None = None, rows: int = 3072) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"fake", b"data": rng.integers(0, 256, (n, rows), dtype=np.uint8),
            b"labels": labels if labels is not None else [int(v) for v in rng.integers(0, 10, n)],
            b"filenames": [b"x.png"] * n}


def _write(folder, name: str, obj: object) -> None:
    with open(folder / name, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)  # numpy arrays via _reconstruct, bytes natively


def fake_cifar(tmp_path, **override: object):
    """A tiny folder in the CIFAR-10 python layout; ``override`` replaces files' contents."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i, name in enumerate(CIFAR_BATCHES + ("test_batch",)):
        _write(folder, name, override.get(name, _batch(20, i)))
    _write(folder, "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)],
                                    b"num_cases_per_batch": 20, b"num_vis": 3072})
    return folder


def test_cifar_layout_loads(tmp_path):
    fake_cifar(tmp_path)
    data = load_cifar10(str(tmp_path), ClassificationDataConfig(source=f"cifar10:{tmp_path}", calib_fraction=0.1))
    assert data.train.x.shape == (90, 3, 32, 32) and data.calib.x.shape == (10, 3, 32, 32)
    assert data.test.x.shape == (20, 3, 32, 32) and data.classes == tuple(f"c{i}" for i in range(10))
    # rows are 1024 red, 1024 green, 1024 blue values, row-major
    raw = _batch(20, 5)[b"data"]
    x, _ = read_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch")
    assert x.shape == (20, 3, 32, 32) and x[3, 1, 2, 7] == raw[3, 1024 + 2 * 32 + 7]
    # standardised with the training split's statistics
    assert abs(float(data.train.x.mean())) < 1e-3


def test_cifar_missing_batch(tmp_path):
    folder = fake_cifar(tmp_path)
    os.unlink(folder / "data_batch_3")
    with pytest.raises(DataError, match="lacks data_batch_3"):
        load_cifar10(str(folder), ClassificationDataConfig(source=f"cifar10:{folder}"))


def test_cifar_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_cifar10(str(tmp_path / "nope"), ClassificationDataConfig(source="cifar10:x"))


def test_cifar_wrong_shape(tmp_path):
    folder = fake_cifar(tmp_path, data_batch_2=_batch(20, rows=1024))
    with pytest.raises(DataError, match=r"data_batch_2: data has shape \(20, 1024\)"):
        load_cifar10(str(folder), ClassificationDataConfig(source=f"cifar10:{folder}"))


def test_cifar_wrong_label_range(tmp_path):
    folder = fake_cifar(tmp_path, test_batch=_batch(4, labels=[0, 3, 10, 2]))
    with pytest.raises(DataError, match=r"labels range 0\.\.10"):
        load_cifar10(str(folder), ClassificationDataConfig(source=f"cifar10:{folder}"))


def test_cifar_label_count_mismatch(tmp_path):
    folder = fake_cifar(tmp_path, data_batch_1=_batch(4, labels=[0, 1]))
    with pytest.raises(DataError, match="2 labels for 4 images"):
        load_cifar10(str(folder), ClassificationDataConfig(source=f"cifar10:{folder}"))


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_cifar_disallowed_global_is_refused_without_running(tmp_path):
    target = tmp_path / "created-by-pickle"
    bad = _batch(4)
    bad[b"labels"] = _Exploit(str(target))
    folder = fake_cifar(tmp_path, data_batch_4=bad)
    with pytest.raises(DataError, match="disallowed global posix.makedirs|disallowed global os.makedirs"):
        load_cifar10(str(folder), ClassificationDataConfig(source=f"cifar10:{folder}"))
    assert not target.exists()


def test_cifar_not_a_pickle(tmp_path):
    folder = fake_cifar(tmp_path)
    (folder / "test_batch").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="test_batch is not a readable pickle"):
        load_cifar10(str(folder), ClassificationDataConfig(source=f"cifar10:{folder}"))


def test_digits_upsampled_and_stratified():
    data = load_digits_data(ClassificationDataConfig(source="digits"))
    assert data.train.x.shape[1:] == (3, 32, 32) and data.num_classes == 10
    assert len(data.train) + len(data.calib) + len(data.test) == 1797
    counts = np.bincount(data.test.y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # ~20 % of ~180 per class
    assert not data.flip  # flipped digits change meaning
    again = load_digits_data(ClassificationDataConfig(source="digits"))
    assert np.array_equal(again.test.x, data.test.x)


def test_chips_source_and_train_cap():
    data = open_classification(ClassificationDataConfig(source="chips", n_samples=60, max_train=20))
    assert data.num_classes == 5 and data.in_channels == 3
    assert len(data.train) == 20 and len(data.calib) == 9 and len(data.test) == 9
    assert np.bincount(data.train.y).tolist() == [4, 4, 4, 4, 4]


def test_bad_source_is_a_config_error():
    with pytest.raises(ConfigError, match="data.source"):
        ClassificationDataConfig(source="imagenet")
    with pytest.raises(ConfigError, match="cifar10:PATH"):
        ClassificationDataConfig(source="cifar10")
