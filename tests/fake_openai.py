"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

The ``openai`` SDK (3.x, over httpx2) talks to it exactly as it would to a
hosted endpoint, so tests exercise the real transport, retries and parsing.

Example
-------
>>> from fake_openai import FakeOpenAIServer
>>> with FakeOpenAIServer(chat=[(r"cat", "yes")], default_reply="no") as srv:
...     srv.base_url  # doctest: +ELLIPSIS
'http://127.0.0.1:.../v1'

Endpoints
---------
- ``POST /v1/chat/completions``: content from ``chat`` (see below), with
  ``usage``, optional ``reasoning_content`` and ``logprobs``.
- ``POST /v1/responses``: the Responses API (used by the peer package), same
  ``chat`` handler.
- ``POST /v1/embeddings``: deterministic unit vectors seeded from
  ``sha256(text)``, as floats or base64 (``encoding_format``).

``chat`` is either a callable ``chat(body) -> str | dict`` or a list of
``(regex, reply)`` rules matched (``re.search``, case-insensitive) against the
last user message; ``reply`` is a string or a callable ``reply(match, body)``.
A dict reply has ``content`` (a string or None) and optionally
``reasoning_content``, ``logprobs`` (OpenAI's ``{"content": [...]}`` format),
``refusal`` and ``finish_reason``. Unmatched messages get ``default_reply``.

Failure shapes of real servers (constructor options, also settable as
attributes while the server runs; all off by default):

- ``thinking="tags"``: a thinking model without a reasoning parser: the content
  is ``<think> ...thinking_words words... </think>`` then the answer.
  ``thinking="parser"``: a server with a reasoning parser: the thinking comes
  as ``reasoning_content`` (``reasoning_field``), the answer as content.
  Either is turned off per request by ``chat_template_kwargs.enable_thinking:
  false`` (vLLM, llama.cpp), ``reasoning_effort: "none"`` or ``think: false``
  (Ollama). Thinking counts against ``max_tokens``: an answer that does not
  fit is cut off with ``finish_reason="length"`` (an unclosed ``<think>``, or
  no content at all after the parser).
- ``truncate=True``: any reply longer than ``max_tokens`` (or
  ``max_completion_tokens``) words is cut off with ``finish_reason="length"``.
- ``preamble="Here is the property:\n\n"``: prefixed to every reply.
- ``refusal="text"``: every reply is "I'm sorry, but I can't help with that.";
  ``refusal="field"``: content null and OpenAI's ``message.refusal`` set.
- ``content_null=True``: every reply has content null (and nothing else).
- ``logprobs=False``: the ``logprobs`` request parameter is ignored.
- ``reject_params=("max_tokens",)``: a request that carries one of these body
  keys gets HTTP 400 with OpenAI's "Unsupported parameter" error.
- ``response_format=False``: a request with ``response_format`` of type
  ``json_schema`` gets HTTP 400 naming ``response_format``; with True (the
  default) it is accepted and passed to ``chat`` in the body.

Token counts are whitespace-split words: ``prompt_tokens`` over every message
(or the Responses ``input``), ``completion_tokens`` over the reply.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

MALFORMED_REPLY = "<<garbled ~~ output #%$ without any answer>>"


def _text_of(content) -> str:
    """Text of a message's content: a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict):
            parts.append(str(part.get("text", "")))
        else:
            parts.append(str(part))
    return "\n".join(parts)


def messages_of(body: dict) -> list[dict]:
    """Chat messages of a chat-completions or Responses request body."""
    if "messages" in body:
        return body["messages"]
    inp = body.get("input", "")
    if isinstance(inp, str):
        return [{"role": "user", "content": inp}]
    return [m for m in inp if isinstance(m, dict)]


def last_user_message(body: dict) -> str:
    users = [m for m in messages_of(body) if m.get("role", "user") == "user"]
    return _text_of(users[-1].get("content")) if users else ""


def count_tokens(text: str) -> int:
    return len(text.split())


def prompt_tokens(body: dict) -> int:
    total = sum(count_tokens(_text_of(m.get("content"))) for m in messages_of(body))
    return total + count_tokens(body.get("instructions") or "")


def embedding_for(text: str, dim: int) -> np.ndarray:
    """The unit vector the server returns for ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(dim)
    return (vec / np.linalg.norm(vec)).astype(np.float32)


class FakeOpenAIServer:
    """Scriptable OpenAI-compatible server; use as a context manager.

    Parameters
    ----------
    chat : callable or list of (str, str or callable), default=None
        How chat requests are answered (see the module docstring).
    embed_dim : int, default=16
        Length of the embedding vectors.
    default_reply : str, default="no"
        Content for chat messages no rule matches.
    delay : float, default=0.0
        Seconds slept before each reply; can be changed while running.
    thinking, thinking_words, reasoning_field, truncate, preamble, refusal, \
content_null, logprobs, reject_params, response_format
        Failure shapes of real servers (see the module docstring).
    """

    def __init__(
        self,
        chat=None,
        embed_dim=16,
        default_reply="no",
        delay=0.0,
        *,
        thinking=None,
        thinking_words=40,
        reasoning_field="reasoning_content",
        truncate=False,
        preamble="",
        refusal=None,
        content_null=False,
        logprobs=True,
        reject_params=(),
        response_format=True,
    ):
        self.chat = chat
        self.embed_dim = embed_dim
        self.default_reply = default_reply
        self.delay = delay
        self.thinking = thinking
        self.thinking_words = thinking_words
        self.reasoning_field = reasoning_field
        self.truncate = truncate
        self.preamble = preamble
        self.refusal = refusal
        self.content_null = content_null
        self.logprobs = logprobs
        self.reject_params = tuple(reject_params)
        self.response_format = response_format
        self.requests: list[dict] = []
        self.in_flight = 0
        self.in_flight_max = 0
        self._lock = threading.Lock()
        self._failures: list[tuple[int, float | None]] = []
        self._malformed = 0
        self._conns: set[socket.socket] = set()
        self._httpd = None
        self._thread = None

    # Scripting ----------------------------------------------------------
    def fail(self, status=429, times=1, retry_after=None):
        """The next ``times`` requests get HTTP ``status`` (with Retry-After)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    def malformed(self, times=1):
        """The next ``times`` chat replies are unparseable."""
        with self._lock:
            self._malformed += times

    def reset(self):
        """Forget recorded requests and pending failures."""
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._malformed = 0
            self.in_flight_max = self.in_flight

    def requests_to(self, suffix: str) -> list[dict]:
        """Recorded requests whose path ends with ``suffix``."""
        with self._lock:
            return [r for r in self.requests if r["path"].endswith(suffix)]

    @property
    def usage(self) -> dict:
        """Token totals over all successful chat replies."""
        with self._lock:
            done = [r for r in self.requests if "usage" in r]
            return {
                "calls": len(done),
                "prompt_tokens": sum(r["usage"][0] for r in done),
                "completion_tokens": sum(r["usage"][1] for r in done),
            }

    # Lifecycle ----------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        handler = type("_Handler", (_Handler,), {"server_ref": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is None:
            return
        self._httpd.shutdown()
        # Keep-alive connections would otherwise hold handler threads open.
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # Answers ------------------------------------------------------------
    def _reply(self, body: dict) -> dict:
        with self._lock:
            garble = self._malformed > 0
            self._malformed -= garble
        if garble:
            return {"content": MALFORMED_REPLY}
        if callable(self.chat):
            out = self.chat(body)
        else:
            out = None
            text = last_user_message(body)
            for pattern, reply in self.chat or []:
                match = re.search(pattern, text, flags=re.IGNORECASE | re.DOTALL)
                if match:
                    out = reply(match, body) if callable(reply) else reply
                    break
            if out is None:
                out = self.default_reply
        return {"content": out} if isinstance(out, str) else dict(out)


REFUSAL_TEXT = "I'm sorry, but I can't help with that."
_THOUGHT = (
    "Okay, let me think about this carefully. The user asks whether the text "
    "matches, so I should read it again and weigh each word before I answer."
).split()


def thinking_disabled(body: dict) -> bool:
    """Whether a request turns thinking off, in any server's dialect."""
    kwargs = body.get("chat_template_kwargs") or {}
    return (
        kwargs.get("enable_thinking") is False
        or body.get("reasoning_effort") == "none"
        or body.get("think") is False
    )


def first_words(text: str, n: int) -> str:
    """``text`` up to the end of its ``n``-th whitespace-separated word."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    return text if n >= len(ends) else text[: ends[n - 1]] if n > 0 else ""


def _unsupported(name: str) -> dict:
    """OpenAI's error for a parameter the model rejects."""
    if name == "max_tokens":
        message = (
            "Unsupported parameter: 'max_tokens' is not supported with this "
            "model. Use 'max_completion_tokens' instead."
        )
    elif name == "temperature":
        message = (
            "Unsupported value: 'temperature' does not support 0.0 with this "
            "model. Only the default (1) value is supported."
        )
    else:
        message = f"Unsupported parameter: '{name}' is not supported with this model."
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": name,
            "code": "unsupported_parameter",
        }
    }


def _first_token_logprobs(content: str) -> dict:
    token = (content.split() or [""])[0]
    return {
        "content": [
            {
                "token": token,
                "logprob": 0.0,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": token, "logprob": 0.0, "bytes": list(token.encode())}
                ],
            }
        ]
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: FakeOpenAIServer
    timeout = 30  # idle keep-alive connections end on their own

    def setup(self):
        super().setup()
        with self.server_ref._lock:
            self.server_ref._conns.add(self.connection)

    def finish(self):
        with self.server_ref._lock:
            self.server_ref._conns.discard(self.connection)
        super().finish()

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, payload: dict, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self._send(
                200, {"object": "list", "data": [{"id": "fake", "object": "model"}]}
            )
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        srv = self.server_ref
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            body = {}
        record = {"path": self.path, "body": body, "time": time.time()}
        with srv._lock:
            srv.requests.append(record)
            srv.in_flight += 1
            srv.in_flight_max = max(srv.in_flight_max, srv.in_flight)
            failure = srv._failures.pop(0) if srv._failures else None
        try:
            if srv.delay:
                time.sleep(srv.delay)
            if failure is not None:
                status, retry_after = failure
                record["status"] = status
                headers = (
                    {} if retry_after is None else {"Retry-After": str(retry_after)}
                )
                kind = "rate_limit_error" if status == 429 else "server_error"
                err = {"error": {"message": f"injected {status}", "type": kind}}
                self._send(status, err, headers)
                return
            routes = {
                "/chat/completions": self._chat_completion,
                "/responses": self._response,
                "/embeddings": self._embeddings,
            }
            route = next((f for p, f in routes.items() if self.path.endswith(p)), None)
            rejected = self._rejected(body) if route == self._chat_completion else None
            if rejected is not None:
                record["status"] = 400
                self._send(400, rejected)
                return
            if route is None:
                record["status"] = 404
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                payload = route(body, record)
            except Exception as exc:  # a scripted handler may refuse on purpose
                record["status"] = 500
                self._send(
                    500, {"error": {"message": repr(exc), "type": "server_error"}}
                )
                return
            record["status"] = 200
            self._send(200, payload)
        finally:
            with srv._lock:
                srv.in_flight -= 1

    def _rejected(self, body: dict) -> dict | None:
        """The 400 error a server with unsupported parameters would send."""
        srv = self.server_ref
        for name in srv.reject_params:
            if name in body:
                return _unsupported(name)
        fmt = body.get("response_format") or {}
        if not srv.response_format and fmt.get("type") == "json_schema":
            return {
                "error": {
                    "message": "Invalid parameter: 'response_format' of type "
                    "'json_schema' is not supported with this model.",
                    "type": "invalid_request_error",
                    "param": "response_format",
                    "code": None,
                }
            }
        return None

    def _shape(self, body: dict, reply: dict) -> tuple[dict, str]:
        """The message a real server would send, and its finish_reason."""
        srv = self.server_ref
        content = reply.get("content", "")
        reasoning = reply.get("reasoning_content")
        refusal = reply.get("refusal")
        finish = reply.get("finish_reason", "stop")
        if srv.refusal == "text":
            content = REFUSAL_TEXT
        elif srv.refusal == "field":
            content, refusal = None, REFUSAL_TEXT
        elif content is not None and srv.preamble:
            content = srv.preamble + content
        if srv.content_null:
            content = None
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        thinking = srv.thinking if not thinking_disabled(body) else None
        thought = " ".join(
            _THOUGHT[i % len(_THOUGHT)] for i in range(srv.thinking_words)
        )
        if thinking == "tags" and content is not None:
            content = f"<think>\n{thought}\n</think>\n\n{content}"
        elif thinking == "parser":
            reasoning = thought
        if limit and (thinking or srv.truncate):
            used = count_tokens(reasoning or "")
            if used > limit:
                reasoning, content, finish = (
                    first_words(reasoning, limit),
                    None,
                    "length",
                )
            elif content is not None and used + count_tokens(content) > limit:
                content, finish = first_words(content, limit - used), "length"
                content = content or None
        message = {"role": "assistant", "content": content}
        if reasoning is not None:
            message[srv.reasoning_field] = reasoning
        if refusal is not None:
            message["refusal"] = refusal
        return message, finish

    def _chat_completion(self, body: dict, record: dict) -> dict:
        srv = self.server_ref
        reply = srv._reply(body)
        message, finish = self._shape(body, reply)
        content = message["content"]
        reasoning = message.get(srv.reasoning_field)
        choice = {"index": 0, "message": message, "finish_reason": finish}
        if body.get("logprobs") and srv.logprobs:
            # The first generated token: thinking comes first where there is any.
            generated = " ".join(t for t in (reasoning, content) if t)
            choice["logprobs"] = reply.get("logprobs") or _first_token_logprobs(
                generated
            )
        p_tok = prompt_tokens(body)
        c_tok = count_tokens(content or "") + count_tokens(reasoning or "")
        record["usage"] = (p_tok, c_tok)
        return {
            "id": f"chatcmpl-{len(self.server_ref.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": {
                "prompt_tokens": p_tok,
                "completion_tokens": c_tok,
                "total_tokens": p_tok + c_tok,
            },
        }

    def _response(self, body: dict, record: dict) -> dict:
        reply = self.server_ref._reply(body)
        content = reply.get("content", "")
        p_tok, c_tok = prompt_tokens(body), count_tokens(content)
        record["usage"] = (p_tok, c_tok)
        return {
            "id": f"resp_{len(self.server_ref.requests)}",
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model", "fake"),
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": "msg_0",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": content, "annotations": []}
                    ],
                }
            ],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": p_tok,
                "output_tokens": c_tok,
                "total_tokens": p_tok + c_tok,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }

    def _embeddings(self, body: dict, record: dict) -> dict:
        inputs = body.get("input", [])
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
        ):
            inputs = [inputs]
        dim = int(body.get("dimensions") or self.server_ref.embed_dim)
        as_b64 = body.get("encoding_format") == "base64"
        data, n_tok = [], 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            n_tok += count_tokens(text)
            vec = embedding_for(text, dim)
            emb = (
                base64.b64encode(vec.astype("<f4").tobytes()).decode()
                if as_b64
                else vec.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", "fake"),
            "usage": {"prompt_tokens": n_tok, "total_tokens": n_tok},
        }


# A deterministic "LLM" for annotation prompts --------------------------------
_NUMBERED = re.compile(r"^\s*(\d+)\.\s+(.+?)\s*$", re.M)


def concept_present(concept: str, text: str) -> bool:
    """The judge's rule: the concept's last word occurs in the text."""
    words = re.findall(r"[a-z0-9]+", concept.lower())
    return bool(words) and words[-1] in text.lower()


def concept_judge(body: dict) -> str:
    """Answer annotation prompts by :func:`concept_present`.

    Understands this package's multi-concept prompt (numbered concepts, then
    ``Text: ...``; answers JSON), its single-concept prompt (``property: ...``;
    answers yes/no) and the peer package's prompt (``PROPERTY: "..."`` /
    ``TEXT: "..."``; answers "Yes. <reason>" like the model it was written for).
    """
    prompt = last_user_message(body)
    peer = re.findall(r'PROPERTY: "(.*?)"\s*\nTEXT: "(.*?)"\s*\nOutput:', prompt, re.S)
    if peer:
        concept, text = peer[-1]
        if concept_present(concept, text):
            return "Yes. The text clearly matches the property."
        return "No. The text does not match the property."
    head, _, text = prompt.rpartition("Text: ")
    single = re.search(r"property: (.+)", head)
    if single and not _NUMBERED.search(head):
        return "yes" if concept_present(single.group(1), text) else "no"
    answers = {n: int(concept_present(c, text)) for n, c in _NUMBERED.findall(head)}
    return json.dumps(answers)
