import os
import tempfile
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import sklearn_hypothesaes.sae._training as training
from sklearn_hypothesaes import SparseAutoencoder
from sklearn_hypothesaes.app._memory import ArrayMemory, cache_key
from sklearn_hypothesaes.utils._store import CacheError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    return X, y


@pytest.fixture
def trainings(monkeypatch):
    """Count calls of the SAE training loop."""
    calls = []
    original = training.train

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train", counted)
    return calls


def sae(**kw):
    params = dict(n_latents=16, k=3, max_epochs=3, batch_size=64, random_state=0)
    params.update(kw)
    return SparseAutoencoder(**params)


def pipeline(memory, **kw):
    return Pipeline(
        [("sae", sae(**kw)), ("sel", SelectKBest(f_classif, k=5))], memory=memory
    )


def test_second_fit_loads_instead_of_training(tmp_path, data, trainings):
    X, y = data
    memory = ArrayMemory(tmp_path)
    first = pipeline(memory).fit(X, y)
    assert len(trainings) == 1
    second = pipeline(memory).fit(X, y)
    assert len(trainings) == 1
    a, b = first.named_steps["sae"], second.named_steps["sae"]
    for name in ("encoder_weight_", "encoder_bias_", "decoder_weight_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.loss_curve_ == b.loss_curve_ and a.n_iter_ == b.n_iter_ == 3
    np.testing.assert_array_equal(
        first.named_steps["sel"].get_support(), second.named_steps["sel"].get_support()
    )
    np.testing.assert_array_equal(first.transform(X), second.transform(X))
    # One entry, arrays and JSON only: a zip of .npy members, no pickle.
    (entry,) = tmp_path.iterdir()
    assert entry.suffix == ".npz"
    assert entry.name == f"SparseAutoencoder-{cache_key(sae(), X)}.npz"
    with zipfile.ZipFile(entry) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    with np.load(entry, allow_pickle=False) as npz:
        assert all(npz[n].dtype.kind in "biuf" for n in npz.files)


def test_key_follows_params_and_data_not_verbose(tmp_path, data, trainings):
    X, y = data
    memory = ArrayMemory(tmp_path)
    pipeline(memory).fit(X, y)
    pipeline(memory, verbose=1).fit(X, y)
    assert len(trainings) == 1
    # The SAE ignores y: another target on the same rows reuses its fit.
    pipeline(memory).fit(X, y[::-1])
    assert len(trainings) == 1
    pipeline(memory, k=4).fit(X, y)
    assert len(trainings) == 2
    pipeline(memory).fit(X[:-1], y[:-1])
    assert len(trainings) == 3
    pipeline(memory).fit(X.astype(np.float64), y)
    assert len(trainings) == 4
    assert len(list(tmp_path.iterdir())) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickle"])
def test_corrupt_entry_is_warned_refitted_and_overwritten(
    tmp_path, data, trainings, damage
):
    X, y = data
    memory = ArrayMemory(tmp_path)
    expected = pipeline(memory).fit(X, y).transform(X)
    (entry,) = tmp_path.iterdir()
    content = entry.read_bytes()
    if damage == "garbage":
        entry.write_bytes(b"not an npz file")
    elif damage == "truncated":
        entry.write_bytes(content[: len(content) // 2])
    else:
        import pickle

        entry.write_bytes(pickle.dumps({"a": 1}))
    with pytest.warns(UserWarning) as record:
        refit = pipeline(memory).fit(X, y)
    (warning,) = [w for w in record if "Ignoring the cached" in str(w.message)]
    message = str(warning.message)
    assert f"'{entry}'" in message and "delete it" in message
    assert "Refitting it; the file will be overwritten." in message
    assert len(trainings) == 2
    np.testing.assert_array_equal(refit.transform(X), expected)
    assert entry.read_bytes() != b"not an npz file"
    pipeline(memory).fit(X, y)
    assert len(trainings) == 2


def test_unusable_location_names_folder_and_remedy(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for location in (afile, afile / "sub"):
        with pytest.raises(CacheError) as err:
            ArrayMemory(location)
        message = str(err.value)
        assert f"The SAE cache folder '{location}' cannot be used" in message
        assert "Pass another folder" in message and "memory=None" in message


def test_read_only_location(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(CacheError, match=r"'.*' cannot be used \(Permission denied\)"):
        ArrayMemory(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes")
def test_read_only_folder(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CacheError, match="Permission denied"):
            ArrayMemory(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_other_steps_call_through(tmp_path, data, trainings):
    X, y = data
    memory = ArrayMemory(tmp_path)
    pipe = Pipeline(
        [("scale", StandardScaler()), ("sae", sae()), ("sel", SelectKBest(k=5))],
        memory=memory,
    )
    pipe.fit(X, y)
    pipe.fit(X, y)
    assert len(trainings) == 1
    (entry,) = tmp_path.iterdir()  # the scaler is not cached
    assert entry.name.startswith("SparseAutoencoder-")


def test_random_state_instance_is_not_cached(tmp_path, data, trainings):
    X, y = data
    memory = ArrayMemory(tmp_path)
    with pytest.warns(UserWarning, match="not cached: The 'random_state' parameter"):
        pipeline(memory, random_state=np.random.RandomState(0)).fit(X, y)
    assert list(tmp_path.iterdir()) == []


def test_cache_hit_keeps_set_output_and_clone(tmp_path, data, trainings):
    X, y = data
    memory = ArrayMemory(tmp_path)
    frame = pd.DataFrame(X, columns=[f"e{i}" for i in range(12)])
    first = pipeline(memory).set_output(transform="pandas").fit(frame, y)
    second = clone(pipeline(memory)).set_output(transform="pandas").fit(frame, y)
    assert len(trainings) == 1
    out = second.transform(frame)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(out, first.transform(frame))
    np.testing.assert_array_equal(
        second.named_steps["sae"].feature_names_in_, frame.columns
    )
