"""TextEmbedder's exported CPU backends (ONNX Runtime, OpenVINO) on the packaged
MiniLM: vectors against the float32 torch model, the export cached on disk,
the probe check refusing a backend that drifts, the backend in the cache key.

The model is exported once for this file into a shared temporary cache folder.
"""

import sys

import numpy as np
import pytest

from sklearn_hypothesaes import TextEmbedder
from sklearn_hypothesaes.text import _onnx

TEXTS = [
    "A gripping thriller with a twist I did not see coming.",
    "Dull and far too long.",
    "The soup was cold and the waiter was rude.",
    "Battery life is excellent.",
    "ok",
]

pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("exported-cache")


@pytest.fixture(scope="module")
def reference(cache):
    return TextEmbedder(cache_dir=False).fit_transform(TEXTS)


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(
    "kind, precision, atol",
    [("onnx", "f32", 1e-5), ("openvino", "f32", 1e-5), ("openvino-bf16", None, 3e-3)],
)
def test_exported_backends_give_the_float32_vectors(
    cache, reference, kind, precision, atol
):
    if kind.startswith("openvino"):
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    emb = TextEmbedder(backend=kind, cache_dir=cache)
    X = emb.fit_transform(TEXTS)
    assert X.shape == (5, 384) and X.dtype == np.float32
    np.testing.assert_allclose(X, reference, atol=atol, rtol=0)
    assert cosines(X, reference).min() > 0.999
    backend = emb._get_backend()
    assert backend.probe_cosine_min >= 0.99
    # bfloat16 where the CPU computes in it, else float32.
    assert backend.precision == (precision or backend.precision)
    assert backend.precision in {"f32", "bf16"}


def test_export_is_made_once_and_reused(cache, reference, monkeypatch):
    TextEmbedder(backend="onnx", cache_dir=cache).fit(TEXTS[:1])
    files = list(cache.glob("exported/*/model.onnx"))
    assert len(files) == 1
    import torch

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    backend = TextEmbedder(backend="onnx", cache_dir=cache)._get_backend()
    assert backend.path == files[0]
    X = backend.encode(TEXTS, 2)
    assert cosines(X, reference).min() > 0.9999


def test_cache_key_names_the_backend(cache):
    texts = [t + " Again." for t in TEXTS]
    TextEmbedder(cache_dir=cache).transform(texts)
    onnx_emb = TextEmbedder(backend="onnx", cache_dir=cache)
    backend = onnx_emb._get_backend()
    calls = []
    forward = backend._forward
    backend._forward = lambda inputs: (
        calls.append(len(inputs["input_ids"])) or (forward(inputs))
    )
    onnx_emb.transform(texts)
    # The torch vectors in the same cache file were not taken for ONNX ones.
    assert sum(calls) == len(texts)
    onnx_emb.transform(texts)
    assert sum(calls) == len(texts)
    assert onnx_emb._cache_identity()["backend"] == "onnx"


def test_int8_is_kept_only_within_cosine_099(cache):
    emb = TextEmbedder(backend="onnx-int8", cache_dir=cache)
    try:
        emb.fit(TEXTS[:1])
    except ValueError as exc:
        # Measured on MiniLM here: the worst probe text drops to about 0.97.
        message = str(exc)
        assert "TextEmbedder(backend='onnx-int8') gives vectors" in message
        assert "at least 0.99 is required" in message and "backend='onnx'" in message
        low = float(message.split("as low as ")[1].split()[0])
        assert 0.9 < low < 0.99
    else:
        assert emb._get_backend().probe_cosine_min >= 0.99


def test_probe_check_refuses_below_the_threshold(cache, monkeypatch):
    monkeypatch.setattr(_onnx, "MIN_COSINE", 1.01)
    # The check runs when the backend is built (vectors in the cache were
    # checked when they were computed).
    with pytest.raises(ValueError, match=r"as low as 1\.0000 \(mean 1\.0000\) on 32"):
        TextEmbedder(backend="onnx", cache_dir=cache)._get_backend()


def test_bad_combinations_and_missing_extra(cache, monkeypatch):
    with pytest.raises(ValueError, match="'layer' parameter .* got backend='onnx'"):
        TextEmbedder(backend="onnx", layer=2, cache_dir=cache).fit(TEXTS)
    with pytest.raises(ValueError, match="'device' parameter must be 'auto' or 'cpu'"):
        TextEmbedder(backend="onnx", device="cuda", cache_dir=cache).fit(TEXTS)
    with pytest.raises(ValueError, match="'backend' parameter"):
        TextEmbedder(backend="tensorrt").fit(TEXTS)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="optional package 'onnxruntime'"):
        TextEmbedder(backend="onnx", cache_dir=cache)._get_backend()
