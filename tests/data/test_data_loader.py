"""DataLoader: shapes, determinism, drop_last, collate, resume, as_tensor; Dataset types."""

import json

import numpy as np
import pytest

from tensorcalc.data import (
    ArrayDataset,
    DataLoader,
    Dataset,
    Subset,
    TensorDataset,
    ToFloat,
    default_collate,
)


def _data(n=23, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), np.arange(n, dtype=np.int64)


class ListDataset(Dataset):
    """A per-example dataset (no batch indexing) returning dicts."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": int(self.y[i])}


def test_shapes_len_and_cover_every_example():
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True, rng=1)
    assert len(loader) == 5
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(5, 3)] * 4 + [(3, 3)]
    assert all(b[0].dtype == np.float32 and b[1].dtype == np.int64 for b in batches)
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23))
    # features travel with their labels
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, x[yb])


def test_no_shuffle_keeps_order():
    x, y = _data()
    batches = list(DataLoader((x, y), batch_size=10))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_drop_last():
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=5, drop_last=True, shuffle=True, rng=0)
    assert len(loader) == 4
    batches = list(loader)
    assert len(batches) == 4 and all(len(b[1]) == 5 for b in batches)
    assert len(DataLoader(x, batch_size=30, drop_last=True)) == 0
    assert list(DataLoader(x, batch_size=30, drop_last=True)) == []


def test_same_seed_same_batches_and_new_permutation_each_epoch():
    x, y = _data(50)

    def two_epochs(seed):
        loader = DataLoader((x, y), batch_size=8, shuffle=True, rng=seed)
        return [np.concatenate([b[1] for b in loader]) for _ in range(2)]

    a, b, c = two_epochs(7), two_epochs(7), two_epochs(8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])          # re-iterable, reshuffled each epoch
    assert not np.array_equal(a[0], c[0])          # depends on the seed
    assert not np.array_equal(a[0], np.arange(50))


def test_generator_rng_is_used_and_advanced():
    x, y = _data(40)
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    b1 = next(iter(DataLoader((x, y), batch_size=40, shuffle=True, rng=g1)))[1]
    b2 = next(iter(DataLoader((x, y), batch_size=40, shuffle=True, rng=g2)))[1]
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(b1, np.random.default_rng(3).permutation(40))


def test_collate_of_tuples_and_dicts_slow_path_matches_fast_path():
    x, y = _data(17)
    slow = list(DataLoader(ListDataset(x, y), batch_size=4, shuffle=True, rng=5))
    fast = list(DataLoader(TensorDataset(x=x, y=y), batch_size=4, shuffle=True, rng=5))
    assert len(slow) == len(fast) == 5
    for s, f in zip(slow, fast, strict=True):
        assert set(s) == {"x", "y"} and set(f) == {"x", "y"}
        np.testing.assert_array_equal(s["x"], f["x"])
        np.testing.assert_array_equal(s["y"], f["y"])
        assert s["x"].dtype == np.float32 and s["y"].dtype == np.int64


def test_default_collate_structures():
    samples = [(np.ones(2, np.float32) * i, i, {"a": float(i), "s": "w"}) for i in range(3)]
    xb, ib, db = default_collate(samples)
    assert xb.shape == (3, 2) and xb.dtype == np.float32
    np.testing.assert_array_equal(ib, [0, 1, 2])
    assert ib.dtype == np.int64
    assert db["a"].dtype == np.float32          # Python floats do not become float64
    assert db["s"] == ["w", "w", "w"]
    with pytest.raises(ValueError, match="different shapes"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(TypeError, match="different keys"):
        default_collate([{"a": 1}, {"b": 1}])


def test_custom_collate_fn():
    x, y = _data(6)
    loader = DataLoader(TensorDataset(x, y), batch_size=4,
                        collate_fn=lambda items: len(items))
    assert list(loader) == [4, 2]


def test_as_tensor():
    from tensorcalc import Tensor

    x, y = _data(10)
    xb, yb = next(iter(DataLoader((x, y), batch_size=4, as_tensor=True)))
    assert isinstance(xb, Tensor) and isinstance(yb, Tensor)
    assert xb.shape == (4, 3) and xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_array_equal(xb.numpy(), x[:4])


def _ids(batches):
    return [b[1].tolist() for b in batches]


@pytest.mark.parametrize("stop_epoch,stop_batch", [(0, 2), (1, 0), (1, 3), (1, 4), (2, 1)])
def test_resume_mid_epoch_reproduces_uninterrupted_run(stop_epoch, stop_batch):
    x, y = _data(37)
    epochs, bs = 3, 8                                    # 5 batches per epoch

    reference = DataLoader((x, y), batch_size=bs, shuffle=True, rng=11)
    full = [b for _ in range(epochs) for b in reference]

    # run until (stop_epoch, stop_batch) batches were consumed, save, "crash"
    first = DataLoader((x, y), batch_size=bs, shuffle=True, rng=11)
    got = []
    for e in range(epochs):
        if e == stop_epoch and stop_batch == 0:
            break
        for b, batch in enumerate(first):
            got.append(batch)
            if e == stop_epoch and b + 1 == stop_batch:
                break
        if e == stop_epoch:
            break
    assert len(got) == stop_epoch * 5 + stop_batch
    state = json.loads(json.dumps(first.state_dict()))   # survives a JSON checkpoint

    # a fresh process: different rng, restored state
    second = DataLoader((x, y), batch_size=bs, shuffle=True, rng=999)
    second.load_state_dict(state)
    while second.epoch < epochs:
        got.extend(list(second))
    assert _ids(got) == _ids(full)
    assert second.rng.bit_generator.state == reference.rng.bit_generator.state


def test_state_after_last_batch_points_to_next_epoch():
    x, y = _data(16)
    loader = DataLoader((x, y), batch_size=8, shuffle=True, rng=0)
    it = iter(loader)
    next(it)
    assert loader.state_dict()["epoch"] == 0 and loader.state_dict()["position"] == 1
    next(it)
    s = loader.state_dict()
    assert (s["epoch"], s["position"]) == (1, 0)


def test_abandoned_epoch_counts_as_finished():
    x, y = _data(16)
    loader = DataLoader((x, y), batch_size=4, shuffle=True, rng=0)
    next(iter(loader))
    list(loader)
    assert loader.epoch == 2


def test_load_state_dict_rejects_other_data():
    x, y = _data(16)
    state = DataLoader((x, y), batch_size=4, shuffle=True, rng=0).state_dict()
    with pytest.raises(ValueError, match="num_examples"):
        DataLoader((x[:10], y[:10]), batch_size=4, shuffle=True, rng=0).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader((x, y), batch_size=5, shuffle=True, rng=0).load_state_dict(state)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(np.zeros((4, 2)), batch_size=bad)


def test_tensor_dataset_checks_lengths_and_indexes():
    x, y = _data(10)
    with pytest.raises(ValueError, match=r"same length.*\(10, 3\).*\(9,\)"):
        TensorDataset(x, y[:9])
    ds = TensorDataset(x, y)
    assert len(ds) == 10
    xi, yi = ds[3]
    np.testing.assert_array_equal(xi, x[3])
    assert yi == 3
    with pytest.raises(IndexError):
        ds[10]
    named = TensorDataset(image=x, label=y)
    assert set(named[0]) == {"image", "label"}


def test_tensor_dataset_transform_same_for_item_and_batch():
    img = np.arange(2 * 4, dtype=np.uint8).reshape(2, 2, 2) * 30
    ds = TensorDataset(img, np.array([0, 1]), transforms={0: ToFloat()})
    one = ds[1][0]
    batch = ds[np.array([0, 1])][0]
    assert one.dtype == np.float32 and one.shape == (2, 2)
    np.testing.assert_allclose(batch[1], one)
    np.testing.assert_allclose(one, img[1] / 255.0, rtol=1e-6)


def test_subset_keeps_fast_path_and_array_dataset():
    x, y = _data(20)
    sub = Subset(TensorDataset(x, y), np.arange(5, 15))
    loader = DataLoader(sub, batch_size=4)
    assert loader.fast_path
    np.testing.assert_array_equal(np.concatenate([b[1] for b in loader]), np.arange(5, 15))
    arr = ArrayDataset(x)
    assert arr[2].shape == (3,)
    assert next(iter(DataLoader(x, batch_size=6))).shape == (6, 3)
