"""Shared fixtures. Tests never touch the network or the user's cache folder."""

import os

import pytest
from fake_openai import FakeOpenAIServer


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """Default caches go to a temporary folder, not the user's cache."""
    old = os.environ.get("SKLEARN_HYPOTHESAES_CACHE_DIR")
    os.environ["SKLEARN_HYPOTHESAES_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("SKLEARN_HYPOTHESAES_CACHE_DIR", None)
    else:
        os.environ["SKLEARN_HYPOTHESAES_CACHE_DIR"] = old


@pytest.fixture
def fake_server():
    """A started FakeOpenAIServer answering "no" to everything until scripted."""
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def fast_backoff(monkeypatch):
    """Backoff without Retry-After waits milliseconds, not seconds."""
    from sklearn_hypothesaes.utils import _retry

    monkeypatch.setattr(_retry, "BACKOFF_BASE", 0.01)


@pytest.fixture
def make_client(tmp_path):
    """LLMClient factory pointed at a server, with a per-test cache folder."""
    from sklearn_hypothesaes import LLMClient

    def make(server, **params):
        params.setdefault("cache_dir", tmp_path / "llm-cache")
        return LLMClient(model="fake-model", base_url=server.base_url, **params)

    return make
