"""Faster CPU backends of :class:`TextEmbedder`: the same local
sentence-transformers model exported to ONNX and run by ONNX Runtime (float32,
or int8 by dynamic quantisation) or by OpenVINO (float32, or bfloat16 where the
CPU computes in it).

The whole forward pass (transformer, pooling, normalisation) is exported from
the loaded model with ``torch.onnx``, with no network and no Optimum, once per
model into a cache folder. When a backend is built it embeds a fixed probe set
with both itself and the float32 torch model and refuses to run when any probe
vector's cosine similarity to the float32 one is below 0.99: a faster backend
is kept only where it gives (nearly) the same vectors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..utils._misc import import_optional, stable_hash
from ._backends import SentenceTransformerBackend, resolve_local_model

EXPORTED_BACKENDS = ("onnx", "onnx-int8", "openvino", "openvino-bf16")
MIN_COSINE = 0.99
# Bump when the export changes, so that old files are not reused.
_EXPORT_FORMAT = 1
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXTRA = {"onnx": "onnx", "onnx-int8": "onnx", "openvino": "openvino"}
_EXTRA["openvino-bf16"] = "openvino"

# Short and long, plain and odd: where reduced precision drifts, it shows here.
PROBE_TEXTS = [
    "A gripping thriller.",
    "Dull and far too long.",
    "ok",
    "The soup was cold, the waiter was rude, and the bill was wrong twice.",
    "I would not recommend this hotel to anyone who values a quiet night.",
    "Battery life is excellent; the screen scratches easily.",
    "What time does the museum open on Sundays?",
    "The committee postponed the vote until the budget figures are audited.",
    "lol this is the best thing ever!!!",
    "Refund took three weeks and four phone calls.",
    "The film's second half loses the tension its first half builds so "
    "carefully, trading character for spectacle and a plot twist that anyone "
    "who has seen a thriller before will guess in the opening minutes.",
    "Prices rose 3.2% in March, driven by energy and food.",
    "Il pleut depuis ce matin et la route est fermée.",
    "The patient reported mild headaches after the second dose.",
    "Not bad, not great.",
    "Delivery was fast but the box arrived crushed and the glass inside "
    "was broken, so I had to return it and wait for a replacement.",
    "Terrible.",
    "An understated, beautifully acted drama about grief and friendship.",
    "The new firmware fixes the Wi-Fi drop-outs but drains the battery.",
    "Our team shipped the release two days ahead of schedule.",
    "The court ruled that the contract was void from the start.",
    "Kids loved it; parents were bored stiff.",
    "def add(a, b): return a + b",
    "The senator's speech focused on healthcare costs and rural hospitals, "
    "promising federal funding for clinics that serve fewer than ten "
    "thousand residents and a review of drug pricing rules.",
    "Five stars. Would buy again.",
    "The sauce is too salty and the pasta overcooked.",
    "Quarterly revenue beat expectations, but guidance was cut.",
    "She walked out of the theatre before the credits rolled.",
    "Customer service resolved my issue in under five minutes.",
    "The bridge will be closed for repairs through the end of the month.",
    "Honestly the most forgettable sequel of the decade.",
    "Great value for money, though the instructions are confusing.",
]


def _model_fingerprint(source: str) -> list:
    """Names, sizes and times of a local model's files: a changed model in the
    same folder gets a new export."""
    folder = Path(source)
    if not folder.is_dir():
        return [source]
    return sorted(
        [str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns]
        for p in folder.rglob("*")
        if p.is_file()
    )


def _sentence_forward(model, names):
    """A torch module whose forward maps token tensors to the model's sentence
    embedding (torch is imported only when an export is needed)."""
    import torch

    class SentenceForward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            features = dict(zip(names, inputs, strict=True))
            return self.model(features)["sentence_embedding"]

    return SentenceForward().eval()


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _replace_atomic(write, target: Path):
    """Run ``write(tmp_path)`` and move the file into place; a concurrent
    export of the same model writes the same bytes, so the last one wins."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=target.suffix + ".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


class ExportedBackend(SentenceTransformerBackend):
    """A local sentence-transformers model run by ONNX Runtime or OpenVINO.

    The torch model stays loaded for tokenising and for the probe check.
    ``probe_cosine_min`` and ``probe_cosine_mean`` hold the check's result;
    ``precision`` what the runtime computes in.
    """

    def __init__(
        self,
        model,
        *,
        kind,
        device="auto",
        trust_remote_code=False,
        verbose=False,
        export_dir=None,
        min_cosine=None,
    ):
        # ``device`` is checked by TextEmbedder: these runtimes use the CPU.
        # ``min_cosine`` is lowered only by benchmarks, to time what is refused.
        if kind not in EXPORTED_BACKENDS:
            raise ValueError(f"Unknown exported backend {kind!r}.")
        purpose = f"TextEmbedder(backend={kind!r})"
        if kind.startswith("onnx"):
            self.ort = import_optional("onnxruntime", purpose)
        else:
            self.ov = import_optional("openvino", purpose)
        super().__init__(
            model, device="cpu", trust_remote_code=trust_remote_code, verbose=verbose
        )
        self.kind = kind
        sample = self.model.preprocess(["a probe", "another probe text"])
        self.input_names = [k for k in _INPUTS if k in sample]
        self._temp = None
        if export_dir is None:
            # No cache: the export lives as long as this backend.
            self._temp = tempfile.TemporaryDirectory(prefix="sklearn-hypothesaes-")
            export_dir = self._temp.name
        source, identity = resolve_local_model(model)
        key = stable_hash(
            {
                "format": _EXPORT_FORMAT,
                "model": identity,
                "files": _model_fingerprint(source),
                "torch": self.torch.__version__,
            }
        )
        self.folder = Path(export_dir) / "exported" / key[:24]
        onnx_path = self._export(sample)
        if kind == "onnx-int8":
            onnx_path = self._quantize(onnx_path)
        self.path = onnx_path
        self._forward = self._load(onnx_path)
        self._check_probe(MIN_COSINE if min_cosine is None else min_cosine)

    # Export and load ------------------------------------------------------
    def _export(self, sample) -> Path:
        target = self.folder / "model.onnx"
        if target.exists():
            return target
        import_optional("onnx", f"TextEmbedder(backend={self.kind!r})")
        torch = self.torch
        module = _sentence_forward(self.model, self.input_names)
        args = tuple(sample[k] for k in self.input_names)
        axes = {k: {0: "batch", 1: "tokens"} for k in self.input_names}
        axes["sentence_embedding"] = {0: "batch"}

        def write(tmp):
            with warnings.catch_warnings(), torch.inference_mode(False):
                # The TorchScript exporter is deprecated but needs no onnxscript.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    args,
                    tmp,
                    dynamo=False,
                    input_names=self.input_names,
                    output_names=["sentence_embedding"],
                    dynamic_axes=axes,
                    opset_version=17,
                )

        _replace_atomic(write, target)
        return target

    def _quantize(self, onnx_path: Path) -> Path:
        target = self.folder / f"model.int8-ort{self.ort.__version__}.onnx"
        if target.exists():
            return target
        from onnxruntime.quantization import QuantType, quantize_dynamic

        def write(tmp):
            # Weights of the dense layers only, per output channel: the
            # activations are quantised on the fly at run time. The quantiser
            # logs advice meant for image models to the root logger.
            with _quiet_root_logger():
                quantize_dynamic(
                    onnx_path,
                    tmp,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    op_types_to_quantize=["MatMul"],
                    extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1},
                )

        _replace_atomic(write, target)
        return target

    def _load(self, onnx_path: Path):
        threads = self.torch.get_num_threads()
        if self.kind.startswith("onnx"):
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = self.ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
            self.precision = "int8" if self.kind == "onnx-int8" else "f32"
            return lambda inputs: session.run(None, inputs)[0]
        core = self.ov.Core()
        hint = "bf16" if self.kind == "openvino-bf16" else "f32"
        compiled = core.compile_model(
            core.read_model(str(onnx_path)),
            "CPU",
            {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint},
        )
        # A CPU without bfloat16 arithmetic computes in float32 instead.
        self.precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        return lambda inputs: compiled(inputs)[0]

    def _check_probe(self, min_cosine):
        reference = super().encode(PROBE_TEXTS, 16)
        got = self.encode(PROBE_TEXTS, 16)
        norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(got, axis=1)
        cosine = (reference * got).sum(axis=1) / np.maximum(norms, 1e-12)
        self.probe_cosine_min = float(cosine.min())
        self.probe_cosine_mean = float(cosine.mean())
        if not self.probe_cosine_min >= min_cosine:
            raise ValueError(
                f"TextEmbedder(backend={self.kind!r}) gives vectors whose cosine "
                f"similarity to the float32 model's is as low as "
                f"{self.probe_cosine_min:.4f} (mean {self.probe_cosine_mean:.4f}) "
                f"on {len(PROBE_TEXTS)} probe texts; at least {min_cosine} is "
                "required, so this model is not run this way. Use "
                "backend='onnx' or 'openvino' (float32), or 'sentence-transformers'."
            )

    # Encoding ---------------------------------------------------------------
    def configure(self, prompt=None, layer=None, pooling="mean"):
        if layer is not None:
            raise ValueError(
                "The 'layer' parameter of TextEmbedder needs "
                f"backend='sentence-transformers'; got backend={self.kind!r}."
            )
        self.prompt, self.layer, self.pooling = prompt, None, pooling

    def encode(self, texts, batch_size) -> np.ndarray:
        texts = list(texts)
        out = []
        for start in range(0, len(texts), batch_size):
            features = self.model.preprocess(
                texts[start : start + batch_size], prompt=self.prompt
            )
            inputs = {k: features[k].numpy() for k in self.input_names}
            out.append(np.asarray(self._forward(inputs), dtype=np.float32))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out)
