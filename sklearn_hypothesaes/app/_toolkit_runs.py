"""The toolkit's four analyses on the command line: ``run_diff``,
``run_correlations``, ``run_cluster`` and ``run_search``, each from the parsed
options to a dict of results (tables, the fitted embedder, usage)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._cli_common import InputError, note
from ._toolkit_fit import (
    check_size,
    column_texts,
    embed_texts,
    fit_embedder,
    read_corpus,
    with_usage,
)

__all__ = ["RUNS", "run_cluster", "run_correlations", "run_diff", "run_search"]


# ---------------------------------------------------------------- the runs
def run_diff(args, cache, client, timings) -> dict:
    """Latents that fire more often in one corpus (``diff A B``), with the
    summary in words and its check on held-out texts under ``--summarize``."""
    from sklearn.model_selection import train_test_split

    from ..toolkit._diff import diff_corpora, summarize_differences

    _, texts_a = read_corpus(args.input_a, args)
    _, texts_b = read_corpus(args.input_b, args)
    texts_a, texts_b = texts_a.dropna(), texts_b.dropna()
    for path, texts in ((args.input_a, texts_a), (args.input_b, texts_b)):
        check_size(texts, path)
    names = list(args.names or _corpus_names(args.input_a, args.input_b))
    held_a = held_b = None
    if args.summarize:
        texts_a, held_a = train_test_split(
            texts_a, test_size=args.holdout_fraction, random_state=args.seed
        )
        texts_b, held_b = train_test_split(
            texts_b, test_size=args.holdout_fraction, random_state=args.seed
        )
        texts_a, texts_b = texts_a.sort_index(), texts_b.sort_index()
    a, b = texts_a.tolist(), texts_b.tolist()
    note(
        f"{len(a)} texts of {names[0]} and {len(b)} of {names[1]}"
        + (
            f" ({len(held_a)} and {len(held_b)} more held out to check the summary)"
            if args.summarize
            else ""
        )
        + f", {'LLM' if client else 'offline'} labels."
    )
    embedder, _ = fit_embedder(a + b, args, cache, client, timings)
    start = time.perf_counter()
    table = diff_corpora(
        a,
        b,
        embedder=embedder,
        test=args.test,
        correction=args.correction,
        alpha=args.alpha,
        top=args.top,
    )
    timings["diff"] = time.perf_counter() - start
    usage = dict(embedder.usage_)
    summary = None
    if args.summarize:
        start = time.perf_counter()
        summary = summarize_differences(
            table,
            client,
            held_a.tolist(),
            held_b.tolist(),
            n_differences=args.n_differences,
            names=tuple(names),
            test=args.test,
            correction=args.correction,
            alpha=args.alpha,
            random_state=args.seed,
        )
        usage = with_usage(usage, summary.usage.as_dict())
        timings["summary"] = time.perf_counter() - start
    return {
        "table": table,
        "summary": summary,
        "names": names,
        "embedder": embedder,
        "usage": usage,
    }


def _corpus_names(path_a, path_b):
    a, b = Path(path_a).name, Path(path_b).name
    for suffix in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        a, b = a.removesuffix(suffix), b.removesuffix(suffix)
    a, b = Path(a).stem, Path(b).stem
    return (a, b) if a != b else ("A", "B")


def run_correlations(args, cache, client, timings) -> dict:
    """Latent pairs that fire together more than chance (``correlations``),
    with up to three example rows per pair."""
    from ..toolkit._correlations import concept_correlations

    frame, texts = read_corpus(args.input, args)
    other = None
    if args.other_column is not None:
        other = column_texts(frame, args.other_column, "--other-column", args.input)
        missing = texts.notna() & other.isna()
        if missing.any():
            note(
                f"'{args.input}': {int(missing.sum())} rows have no text in "
                f"{args.other_column!r} and are left out."
            )
        keep = texts.notna() & other.notna()
        texts, other = texts[keep], other[keep]
    else:
        texts = texts.dropna()
    check_size(texts, args.input)
    x = texts.tolist()
    y = None if other is None else other.tolist()
    note(
        f"{len(x)} rows"
        + ("" if y is None else f" of {args.text_column!r} and {args.other_column!r}")
        + f", {'LLM' if client else 'offline'} labels."
    )
    # One autoencoder for both columns, so a latent means the same in each.
    embedder, known = fit_embedder(
        x + ([] if y is None else y), args, cache, client, timings
    )
    start = time.perf_counter()
    labelled = embedder.labels_["label"].notna().any()
    if not labelled:
        note(
            "no latent got a label, so labels cannot be compared: pairs that say "
            "the same thing are not filtered (a lower --min-term-score labels more)."
        )
    table = concept_correlations(
        x,
        embedder=embedder,
        Y=y,
        min_count=args.min_count,
        alpha=args.alpha,
        correction=args.correction,
        label_similarity=known if labelled else None,
        max_label_similarity=args.max_label_similarity,
        top=args.top,
    )
    # Rows where both latents of a pair fire, strongest first.
    fx = embedder.binarize(x)
    fy = fx if y is None else embedder.binarize(y)
    zx = embedder.transform(x)
    zy = zx if y is None else embedder.transform(y)
    examples = []
    for a, b in zip(table["latent_a"], table["latent_b"], strict=True):
        both = np.flatnonzero(
            fx[:, [a]].toarray().ravel() & fy[:, [b]].toarray().ravel()
        )
        strength = (
            zx[both][:, [a]].toarray().ravel() + zy[both][:, [b]].toarray().ravel()
        )
        rows = both[np.lexsort((both, -strength))][:3]
        examples.append([x[i] if y is None else f"{x[i]} → {y[i]}" for i in rows])
    table["examples"] = examples
    timings["correlations"] = time.perf_counter() - start
    return {"table": table, "embedder": embedder, "usage": dict(embedder.usage_)}


def _check_labelled(embedder, what: str):
    if embedder.labels_["label"].notna().any():
        return
    raise InputError(
        f"no latent got a label, so {what} has nothing to be matched to: no word "
        "distinguishes the texts where any latent fires. Give a lower "
        "--min-term-score (e.g. 2), more rows, or an LLM to label the latents "
        "(--model, --base-url)"
        + ("; or choose latents by number with --latents." if "axis" in what else ".")
    )


def _row_frame(frame, args):
    """Each input row's number and id, for the result tables."""
    rows = pd.DataFrame({"row": np.arange(len(frame))})
    if args.id_column is not None:
        if args.id_column not in frame.columns:
            columns = [str(c) for c in frame.columns]
            raise InputError(
                f"--id-column {args.id_column!r} is not a column of "
                f"'{args.input}'; its columns are {columns[:20]}"
                f"{' ...' if len(columns) > 20 else ''}."
            )
        rows[args.id_column] = frame[args.id_column].to_numpy()
    return rows


def run_cluster(args, cache, client, timings) -> dict:
    """Every input row's cluster along ``--axis`` or ``--latents``
    (``cluster``); rows without a text are in cluster -1."""
    from ..toolkit._clustering import NO_AXIS_CLUSTER, ConceptClustering

    frame, texts = read_corpus(args.input, args)
    rows = _row_frame(frame, args)
    present = texts.dropna()
    check_size(present, args.input)
    along = (
        f"axis {args.axis!r}"
        if args.axis
        else f"latents {args.latents}"
        if args.latents
        else "every latent"
    )
    note(
        f"{len(present)} rows, clustered along {along}, "
        f"{'LLM' if client else 'offline'} labels."
    )
    embedder, _ = fit_embedder(present.tolist(), args, cache, client, timings)
    if args.axis and args.latents is None:
        _check_labelled(embedder, f"--axis {args.axis!r}")
    start = time.perf_counter()
    model = ConceptClustering(
        args.axis,
        latents=args.latents,
        n_clusters=args.n_clusters,
        embedder=embedder,
        n_latents=args.n_axis_latents,
        llm=client,
        random_state=args.seed,
    )
    try:
        model.fit(pd.Series(present.tolist(), index=present.index.to_numpy()))
    except ValueError as exc:
        # No latent for the axis, or none labelled: the user's choice to change.
        raise InputError(
            " ".join(str(exc).split())
            + (
                f" (--axis {args.axis!r}: name the axis differently, or choose "
                "latents with --latents.)"
                if args.axis
                else ""
            )
        ) from None
    timings["clustering"] = time.perf_counter() - start
    found = model.assignments_
    assignments = rows.copy()
    assignments["text"] = texts.to_numpy(dtype=object)
    assignments["cluster"] = NO_AXIS_CLUSTER
    assignments["axis_latents"] = ""
    assignments.loc[found.index, "cluster"] = found["cluster"].to_numpy()
    assignments.loc[found.index, "axis_latents"] = found["axis_latents"].to_numpy()
    clusters = model.cluster_descriptions_.copy()
    n_empty = int(texts.isna().sum())
    if n_empty:
        # Rows without a text have nothing to compare on: cluster -1 too.
        where = clusters["cluster"] == NO_AXIS_CLUSTER
        if not where.any():
            extra = {c: [] for c in ("latents", "labels", "rate_in", "rate_out")}
            clusters.loc[len(clusters)] = {
                "cluster": NO_AXIS_CLUSTER,
                "size": 0,
                "share": 0.0,
                "description": f"none of the {len(model.latents_)} axis latents fires",
                "lift": [],
                "examples": [],
                **extra,
            }
            where = clusters["cluster"] == NO_AXIS_CLUSTER
        i = clusters.index[where][0]
        clusters.at[i, "size"] = int(clusters.at[i, "size"]) + n_empty
        clusters.at[i, "description"] += f"; {n_empty} rows have no text"
    clusters["share"] = clusters["size"] / len(assignments)
    usage = with_usage(dict(embedder.usage_), model.usage_)
    return {
        "clusters": clusters,
        "assignments": assignments,
        "axis_latents": model.latents_,
        "embedder": embedder,
        "usage": usage,
    }


def run_search(args, cache, client, timings) -> dict:
    """The rows that best match the query (``search``), by latents or, with
    ``--method dense``, by cosine similarity of embeddings."""
    from ..toolkit._search import PropertySearch

    frame, texts = read_corpus(args.input, args)
    rows = _row_frame(frame, args)
    present = texts.dropna()
    check_size(present, args.input, least=1 if args.method == "dense" else 10)
    note(
        f"{len(present)} rows, searched for {args.query!r} by "
        + (
            f"latents, {'LLM' if client else 'offline'} labels."
            if args.method == "sae"
            else "cosine similarity of embeddings (dense)."
        )
    )
    series = pd.Series(present.tolist(), index=present.index.to_numpy())
    embedder = None
    if args.method == "sae":
        embedder, _ = fit_embedder(present.tolist(), args, cache, client, timings)
        _check_labelled(embedder, "the query")
        search = PropertySearch(embedder, n_latents=args.n_query_latents, llm=client)
    else:
        known, _ = embed_texts(present.tolist(), args, cache, timings)
        search = PropertySearch(text_embedder=known, method="dense")
    start = time.perf_counter()
    found = search.fit(series).search(args.query, k=args.top)
    timings["search"] = time.perf_counter() - start
    results = found.drop(columns=["row", "id"])
    results.insert(1, "row", found["id"].to_numpy(dtype=np.int64))
    if args.id_column is not None:
        ids = rows.set_index("row")[args.id_column]
        results.insert(2, args.id_column, ids.loc[results["row"]].to_numpy())
    matched = pd.DataFrame(found.attrs["matched"])
    usage = dict(embedder.usage_) if embedder is not None else {}
    usage = with_usage(usage, found.attrs.get("usage"))
    return {
        "results": results,
        "matched": matched,
        "n_matches": found.attrs["n_matches"],
        "n_rows": len(present),
        "embedder": embedder,
        "usage": usage,
    }


RUNS = {
    "diff": run_diff,
    "correlations": run_correlations,
    "cluster": run_cluster,
    "search": run_search,
}
