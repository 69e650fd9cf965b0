"""``execgym serve``: an OpenAI-compatible chat-completions server around a local ``transformers`` policy.

Endpoints: ``POST /v1/chat/completions`` (tools, ``<tool_call>`` blocks parsed into ``tool_calls``, usage
counts, ``n``, ``stop``, ``stream`` token by token, ``logprobs`` / ``top_logprobs``), ``GET /v1/models`` and
``GET /health``. Requests that arrive together are generated in one batch. It is the stdlib's
``ThreadingHTTPServer``, hardened: every request is bounded before the expensive work (body size, JSON numbers
and nesting, message count, prompt size from the tokenizer's longest token and the chat template's per-message
tokens, connections, queued generations, an idle / read timeout, one deadline for a request's line and headers
and one for its body, and a generation deadline), and every malformed request gets a 4xx with an OpenAI-style
JSON error body (lone surrogates in its strings become U+FFFD). A 500 means a bug in the server. Meant for
loopback and a lab network, not the open internet (no auth, no TLS).

Token-exact multi-turn, in the fields vLLM's OpenAI server uses: ``return_token_ids: true`` adds the prompt's
ids (``prompt_token_ids``, top level) and each choice's sampled ids (``choices[i].token_ids``, its stop token
included); ``logprobs: true`` adds each sampled token's log-prob (``choices[i].logprobs.content``, OpenAI's
shape), under the model's own distribution (raw logits, before temperature and top-p, as vLLM reports them
and a trainer recomputes them). Token in: a request may carry ``prefix_token_ids``, the ids of the conversation
through its last assistant message exactly as this server returned them (the previous response's
``prompt_token_ids`` plus its choice's ``token_ids``); the prompt is then those ids followed by the tokenised
text the chat template renders for the messages after that assistant message (see
:func:`~execgym.agents.chat.continuation_text`), so no earlier turn is re-tokenised and the next
``prompt_token_ids`` start with the prefix. (vLLM ignores that field; a client then sees a prompt that does
not start with it.) In a stream, ``prompt_token_ids`` come with the first chunk, and a choice's ``token_ids``
and ``logprobs`` with its ``finish_reason`` chunk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from execgym.agents.chat import continuation_text, parse_tool_calls, render_chat, stop_strings, stop_token_ids
from execgym.agents.hf_policy import Sampled, generate, load_policy
from execgym.core.actions import decode_json

__all__ = ["PolicyServer", "RequestError", "make_http_server", "serve"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
"""The largest request body read (larger ones get 413 before a byte of the body is read)."""
MAX_BODY_DEPTH = 128
"""The deepest nesting of a request body's JSON (deeper bodies get 400; tool schemas are the deepest part)."""
_END = -1  # marks the end of a streamed job's tokens
_SURROGATES = re.compile("[\ud800-\udfff]")
_ASCII_DIGITS = re.compile(r"[0-9]+")
MAX_TOP_LOGPROBS = 20
"""The most ``top_logprobs`` a request may ask for (OpenAI's limit)."""


class RequestError(Exception):
    """A request the server refuses, answered as an OpenAI-style error body with ``status``."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": None}}


@dataclass
class _Job:
    prompt: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    on_token: Callable[[int], None] | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    future: Future[Sampled] = field(default_factory=Future)


@dataclass
class _Prepared:
    """A validated request, rendered and tokenized, ready to generate."""

    model: str
    prompt: list[int]
    n: int
    budget: int
    temperature: float
    top_p: float
    stops: list[str]
    parse_tools: bool
    stream: bool
    include_usage: bool
    logprobs: bool = False
    top_logprobs: int = 0
    return_token_ids: bool = False


def _limit(name: str, value: Any, *, low: float, whole: bool = False) -> Any:
    """A server limit as an int (``whole``) or float of at least ``low``, else a one-line ValueError naming it."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= low
          and (not whole or value == int(value)))
    if not ok:
        kind = "a whole number" if whole else "a finite number"
        raise ValueError(f"PolicyServer: {name} must be {kind} >= {low:g}, got {value!r}")
    return int(value) if whole else float(value)


class PolicyServer:
    """The serving logic, independent of HTTP: requests in, OpenAI chat-completion responses out.

    Args:
        model, tokenizer: a loaded causal LM and its tokenizer (see :func:`~execgym.agents.hf_policy.load_policy`).
        model_name: the id clients send as ``model`` (any id is accepted; this one is reported).
        max_batch: the most sequences generated together.
        batch_wait_s: how long the first request of a batch waits for others to join it.
        default_max_tokens: the completion budget when a request gives none.
        max_queued: the most sequences waiting for generation; more get 503 (the client backs off).
        generation_timeout_s: the longest a request waits for its generation (then 504; a sequence not yet
            started is dropped).
        max_prompt_bytes: the longest prompt text accepted before it is tokenized (default: the context
            length times the tokenizer's longest token in bytes, so only prompts that cannot fit are refused,
            and a huge one costs no tokenizer or template memory).
        max_messages: the most messages in one request (default: the context length). Before the chat
            template runs, a request is also refused when its messages cannot fit in the context: each costs
            at least the tokens the template adds around an empty message (measured at start-up,
            ``message_overhead_tokens``), and its text at least its bytes over the longest token's.

    Example:
        >>> server = PolicyServer(*load_policy("models/tiny"), model_name="tiny")        # doctest: +SKIP
        >>> server.complete({"messages": [{"role": "user", "content": "hi"}]})["usage"]  # doctest: +SKIP
        {'prompt_tokens': 9, 'completion_tokens': 12, 'total_tokens': 21}
    """

    def __init__(self, model: Any, tokenizer: Any, *, model_name: str = "execgym-policy", max_batch: int = 32,
                 batch_wait_s: float = 0.01, default_max_tokens: int = 512, max_queued: int = 1024,
                 generation_timeout_s: float = 600.0, max_prompt_bytes: int | None = None,
                 max_messages: int | None = None) -> None:
        # checked first: a zero queue or batch would answer every request 503 or never batch, and say nothing
        self.max_batch = _limit("max_batch", max_batch, low=1, whole=True)
        self.batch_wait_s = _limit("batch_wait_s", batch_wait_s, low=0.0)
        self.default_max_tokens = _limit("default_max_tokens", default_max_tokens, low=1, whole=True)
        self.max_queued = _limit("max_queued", max_queued, low=1, whole=True)
        self.generation_timeout_s = _limit("generation_timeout_s", generation_timeout_s, low=1e-3)
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.context_limit = int(getattr(model.config, "max_position_embeddings", None) or 4096)
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0])
        longest = max((len(str(t).encode("utf-8", "replace")) for t in tokenizer.get_vocab()), default=1)
        self.longest_token_bytes = max(longest, 1)
        self.max_prompt_bytes = int(max_prompt_bytes or self.context_limit * self.longest_token_bytes)
        self.max_messages = int(max_messages or self.context_limit)
        self.message_overhead_tokens = _message_overhead_tokens(tokenizer)
        self.created = int(time.time())
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run_batches, name="execgym-serve-generate", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ batching
    def _run_batches(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_s
            held: list[_Job | None] = []
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is not None and (job.temperature, job.top_p) == (first.temperature, first.top_p):
                    batch.append(job)
                else:
                    held.append(job)  # other sampling settings (or shutdown) go in a later batch
            for job in held:
                self._jobs.put(job)
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]  # drop timed-out requests
            if not batch:
                continue

            def on_token(index: int, token: int, batch: list[_Job] = batch) -> None:
                callback = batch[index].on_token
                if callback is not None:
                    callback(token)

            try:
                outputs = generate(self.model, [j.prompt for j in batch],
                                   max_new_tokens=[j.max_new_tokens for j in batch], stop_ids=self.stop_ids,
                                   pad_id=self.pad_id, temperature=first.temperature, top_p=first.top_p,
                                   batch_size=self.max_batch,
                                   on_token=on_token if any(j.on_token for j in batch) else None,
                                   logprobs=any(j.logprobs for j in batch),
                                   top_logprobs=max(j.top_logprobs for j in batch))
            except Exception as exc:  # a failed batch fails its requests, not the server
                log.exception("generation failed")
                for job in batch:
                    job.future.set_exception(exc)
                    if job.on_token is not None:
                        job.on_token(_END)
                continue
            for job, out in zip(batch, outputs):
                job.future.set_result(out)
                if job.on_token is not None:
                    job.on_token(_END)

    def close(self) -> None:
        self._jobs.put(None)

    # ------------------------------------------------------------------ requests
    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": self.created,
                                            "owned_by": "execgym"}]}

    def prepare(self, request: Mapping[str, Any]) -> _Prepared:
        """Validate a chat-completions request, bound its size, render and tokenize it (400 on any bad field).

        Whatever the request holds, the answer is a :class:`_Prepared` or a :class:`RequestError`: an
        unexpected exception on the way (a chat template or tokenizer choking on odd input) is a 400 too.
        """
        try:
            return self._prepare(request)
        except RequestError:
            raise
        except Exception as exc:
            log.warning("request refused on an unexpected %s", type(exc).__name__, exc_info=True)
            raise RequestError(f"the request could not be processed: {type(exc).__name__}: {str(exc)[:300]}"
                               ) from None

    def _prepare(self, request: Mapping[str, Any]) -> _Prepared:
        raw_messages = request.get("messages")
        if isinstance(raw_messages, list) and len(raw_messages) > self.max_messages:
            raise RequestError(f"{len(raw_messages)} messages are more than the {self.max_messages} accepted",
                               param="messages")
        messages = _messages(raw_messages)
        tools = _tools(request.get("tools"))
        choice = request.get("tool_choice")
        if choice is not None and choice not in ("none", "auto", "required") and not isinstance(choice, dict):
            raise RequestError("'tool_choice' must be 'none', 'auto', 'required' or a function choice",
                               param="tool_choice")
        if choice == "none":
            tools = None
        model = request.get("model")
        if model is not None and not isinstance(model, str):
            raise RequestError("'model' must be a string", param="model")
        logprobs = _bool(request, "logprobs")
        top_logprobs = _int(request, "top_logprobs", 0, low=0, high=MAX_TOP_LOGPROBS)
        if top_logprobs and not logprobs:
            raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        return_token_ids = _bool(request, "return_token_ids")
        prefix = self._prefix(request.get("prefix_token_ids"), messages)
        n = _int(request, "n", 1, low=1, high=16)
        temperature = _float(request, "temperature", 1.0, low=0.0, high=2.0)
        top_p = _float(request, "top_p", 1.0, low=0.0, high=1.0)
        if top_p == 0.0:
            top_p = 1.0
        stops = _stops(request.get("stop"))
        stream = _bool(request, "stream")
        options = request.get("stream_options")
        if options is not None and not (isinstance(options, dict)
                                        and isinstance(options.get("include_usage", False), bool)):
            raise RequestError("'stream_options' must be an object like {\"include_usage\": true}",
                               param="stream_options")
        key = "max_completion_tokens" if request.get("max_completion_tokens") is not None else "max_tokens"
        wanted = request.get(key)
        budget = self.default_max_tokens if wanted is None else _int(request, key, 0, low=1)
        text_bytes = sum(len(m["content"].encode("utf-8", "replace")) for m in messages)
        size = text_bytes + len(json.dumps([m.get("tool_calls") for m in messages],
                                           ensure_ascii=False).encode("utf-8", "replace"))
        size += len(json.dumps(tools or [], ensure_ascii=False).encode("utf-8", "replace"))
        if size > self.max_prompt_bytes:  # before the template and the tokenizer, whose memory grows with it
            raise RequestError(f"the prompt is too long: {size} bytes hold more tokens than this model's context "
                               f"of {self.context_limit} (at most {self.max_prompt_bytes} bytes are accepted)",
                               param="messages")
        overhead = sum(self.message_overhead_tokens.get(m["role"], 0) for m in messages)
        fewest = -(-text_bytes // self.longest_token_bytes) + overhead
        if fewest >= self.context_limit:  # many short messages: the template's own tokens fill the context
            raise RequestError(f"the prompt is too long: {len(messages)} messages take at least {fewest} tokens "
                               f"({overhead} of them the chat template's), this model's context is "
                               f"{self.context_limit}", param="messages")
        try:
            if prefix is None:
                text = render_chat(self.tokenizer, messages, tools, add_generation_prompt=True)
            else:
                text = self._continuation(prefix, messages, tools)
        except RequestError:
            raise
        except Exception as exc:
            raise RequestError(f"the chat template could not render these messages: {exc}",
                               param="messages") from None
        prompt = (prefix or []) + self.tokenizer.encode(text, add_special_tokens=False)
        room = self.context_limit - len(prompt)
        if room <= 0:
            raise RequestError(f"the prompt has {len(prompt)} tokens; this model's context is {self.context_limit}",
                               param="messages")
        return _Prepared(model=model or self.model_name, prompt=prompt, n=n, budget=min(budget, room),
                         temperature=temperature, top_p=top_p, stops=stops, parse_tools=tools is not None,
                         stream=stream, include_usage=bool((options or {}).get("include_usage")),
                         logprobs=logprobs, top_logprobs=top_logprobs, return_token_ids=return_token_ids)

    def _prefix(self, raw: Any, messages: Sequence[Mapping[str, Any]]) -> list[int] | None:
        """A request's ``prefix_token_ids``, checked: token ids of this model, and an assistant turn to end at."""
        if raw is None:
            return None
        if not (isinstance(raw, list) and raw and all(isinstance(t, int) and not isinstance(t, bool) for t in raw)):
            raise RequestError("'prefix_token_ids' must be a non-empty list of token ids", param="prefix_token_ids")
        vocab = len(self.tokenizer)
        if len(raw) >= self.context_limit or not all(0 <= t < vocab for t in raw):
            raise RequestError(f"'prefix_token_ids' must be fewer than {self.context_limit} ids in [0, {vocab})",
                               param="prefix_token_ids")
        if not any(m["role"] == "assistant" for m in messages):
            raise RequestError("'prefix_token_ids' needs the assistant message whose ids end the prefix",
                               param="prefix_token_ids")
        return list(raw)

    def _continuation(self, prefix: list[int], messages: Sequence[Mapping[str, Any]],
                      tools: list[dict[str, Any]] | None) -> str:
        """The text after ``prefix`` (the ids through the last assistant message) up to the generation prompt."""
        before = max(i for i, m in enumerate(messages) if m["role"] == "assistant") + 1
        history = self.tokenizer.decode(prefix, skip_special_tokens=False)
        ended = prefix[-1] in self.stop_ids
        closed = render_chat(self.tokenizer, messages[:before], tools, add_generation_prompt=False)
        turn_end = next((stop for stop in stop_strings(self.tokenizer) if stop in closed), None)
        # the prefix must hold as many turns as the messages it stands for, or its ids are some other chat's
        if turn_end is not None and history.count(turn_end) != closed.count(turn_end) - (0 if ended else 1):
            raise RequestError(f"'prefix_token_ids' hold {history.count(turn_end)} turns, the messages through the "
                               f"last assistant message {closed.count(turn_end)}: send the ids this server returned "
                               "for that conversation", param="prefix_token_ids")
        return continuation_text(self.tokenizer, messages, before, tools, history, ended=ended)

    def _enqueue(self, prepared: _Prepared, on_token: Callable[[int, int], None] | None = None) -> list[_Job]:
        if self._jobs.qsize() + prepared.n > self.max_queued:
            raise RequestError(f"the server is busy ({self._jobs.qsize()} sequences queued); retry later",
                               status=503)
        jobs = []
        for index in range(prepared.n):
            callback = None if on_token is None else (lambda token, i=index: on_token(i, token))
            jobs.append(_Job(prepared.prompt, prepared.budget, prepared.temperature, prepared.top_p, callback,
                             prepared.logprobs, prepared.top_logprobs))
        for job in jobs:
            self._jobs.put(job)
        return jobs

    def _wait(self, job: _Job, deadline: float) -> Sampled:
        try:
            return job.future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            job.future.cancel()  # not started yet: the batcher skips it
            raise RequestError(f"generation did not finish within {self.generation_timeout_s:g} s",
                               status=504) from None

    def complete(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one chat-completions request (already decoded from JSON)."""
        return self.finish(self.prepare(request))

    def finish(self, prepared: _Prepared) -> dict[str, Any]:
        """Generate a prepared request and answer it as one ``chat.completion``."""
        jobs = self._enqueue(prepared)
        deadline = time.monotonic() + self.generation_timeout_s
        choices = []
        completion_tokens = 0
        for index, job in enumerate(jobs):
            produced = self._wait(job, deadline)
            completion_tokens += len(produced.token_ids)
            choices.append(self._answer(index, produced, prepared))
        response = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": prepared.model,
            "choices": choices,
            "usage": _usage(len(prepared.prompt), completion_tokens),
        }
        if prepared.return_token_ids:
            response["prompt_token_ids"] = list(prepared.prompt)
        return response

    def stream(self, prepared: _Prepared) -> Iterator[dict[str, Any]]:
        """Generate a prepared request as ``chat.completion.chunk`` dicts, a content delta per decoded token.

        With tools, text is streamed until a ``<tool_call>`` block starts; the parsed calls come in one delta
        at the end. Text that could be the start of a stop string (or of ``<tool_call>``) is held back until
        it is known not to be one.
        """
        events: queue.Queue[tuple[int, int]] = queue.Queue()
        jobs = self._enqueue(prepared, on_token=lambda index, token: events.put((index, token)))
        deadline = time.monotonic() + self.generation_timeout_s
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": prepared.model}
        writers = [_ChoiceStream(self, prepared) for _ in jobs]
        for index in range(len(jobs)):
            first = {**base, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""},
                                          "finish_reason": None}]}
            if prepared.return_token_ids and index == 0:
                first["prompt_token_ids"] = list(prepared.prompt)
            yield first
        open_jobs = len(jobs)
        while open_jobs:
            try:
                index, token = events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                for job in jobs:
                    job.future.cancel()
                raise RequestError(f"generation did not finish within {self.generation_timeout_s:g} s",
                                   status=504) from None
            writer = writers[index]
            if token != _END:
                delta = writer.add(token)
                if delta:
                    yield {**base, "choices": [{"index": index, "delta": {"content": delta}, "finish_reason": None}]}
                continue
            open_jobs -= 1
            produced = jobs[index].future.result()  # the batch's exception, if generation failed
            final = self._answer(index, produced, prepared)
            for delta in writer.close(final["message"]):
                yield {**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}
            last = {"index": index, "delta": {}, "finish_reason": final["finish_reason"],
                    "logprobs": final["logprobs"]}
            if "token_ids" in final:  # a choice's ids in one chunk: joining the chunks' ids gives them all
                last["token_ids"] = final["token_ids"]
            yield {**base, "choices": [last]}
        if prepared.include_usage:
            completion = sum(len(job.future.result().token_ids) for job in jobs)
            yield {**base, "choices": [], "usage": _usage(len(prepared.prompt), completion)}

    def _answer(self, index: int, sampled: Sampled, prepared: _Prepared) -> dict[str, Any]:
        """One choice of the response: the message, and the token fields the request asked for."""
        choice = self._choice(index, sampled.token_ids, prepared.budget, prepared.stops,
                              parse_tools=prepared.parse_tools)
        if prepared.logprobs:
            choice["logprobs"] = self._logprobs(sampled, prepared.top_logprobs)
        if prepared.return_token_ids:
            choice["token_ids"] = list(sampled.token_ids)
        return choice

    def _choice(self, index: int, produced: list[int], budget: int, stops: Sequence[str],
                *, parse_tools: bool) -> dict[str, Any]:
        ended = bool(produced) and produced[-1] in self.stop_ids
        body = produced[:-1] if ended else produced
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        finish = "stop" if ended or len(produced) < budget else "length"
        for stop in stops:
            cut = text.find(stop)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if parse_tools:
            try:
                content, calls = parse_tool_calls(text)
            except (ValueError, RecursionError):  # a generated block JSON cannot hold (a 5,000-digit number)
                content, calls = text, []
            if calls:
                message = {"role": "assistant", "content": content, "tool_calls": calls}
                finish = "tool_calls"
        return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}

    def _logprobs(self, sampled: Sampled, top: int) -> dict[str, Any]:
        """OpenAI's ``logprobs`` of a choice: every sampled token (its stop token too), with the top ones."""
        def entry(token: int, logprob: float) -> dict[str, Any]:
            text = self.tokenizer.decode([token], skip_special_tokens=False)
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8", "replace"))}

        content = []
        for j, (token, logprob) in enumerate(zip(sampled.token_ids, sampled.logprobs or [])):
            tops = (sampled.top_logprobs or [])[j][:top] if top else []
            content.append({**entry(token, logprob), "top_logprobs": [entry(t, v) for t, v in tops]})
        return {"content": content}


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list", param="messages")
    out = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}] needs a role among system, user, assistant, tool",
                               param=f"messages[{i}]")
        m = dict(msg)
        if m["role"] == "developer":
            m["role"] = "system"
        content = m.get("content")
        if isinstance(content, list):  # content parts: this server reads text parts only
            texts = []
            for j, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    raise RequestError(f"messages[{i}].content[{j}] must be a text part "
                                       '{"type": "text", "text": "..."}', param=f"messages[{i}].content")
                texts.append(part["text"])
            m["content"] = "".join(texts)
        elif content is None:
            m["content"] = ""
        elif not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string or a list of text parts",
                               param=f"messages[{i}].content")
        calls = m.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(_is_call(c) for c in calls)):
            raise RequestError(f"messages[{i}].tool_calls must be a list of function calls "
                               '{"id", "type": "function", "function": {"name", "arguments"}}',
                               param=f"messages[{i}].tool_calls")
        if m["role"] == "tool" and not isinstance(m.get("tool_call_id", ""), str):
            raise RequestError(f"messages[{i}].tool_call_id must be a string", param=f"messages[{i}].tool_call_id")
        out.append(m)
    return out


def _is_call(call: Any) -> bool:
    fn = call.get("function") if isinstance(call, dict) else None
    return (isinstance(fn, dict) and isinstance(fn.get("name"), str)
            and isinstance(fn.get("arguments", ""), (str, dict)))


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list) or not all(
            isinstance(t, dict) and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)
            for t in raw):
        raise RequestError("'tools' must be a list of function tools "
                           '{"type": "function", "function": {"name", "parameters"}}', param="tools")
    return raw


def _stops(raw: Any) -> list[str]:
    if raw is None:
        return []
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise RequestError("'stop' must be a non-empty string or a list of at most 4 of them", param="stop")
    return list(stops)


def _message_overhead_tokens(tokenizer: Any) -> dict[str, int]:
    """Per role, the fewest tokens the chat template adds for one more empty message of that role.

    Measured in the steady state (the tokens of 6 extra messages of a role less those of 2, over 4), so a
    message costs at least this much; a role the template refuses in such a run gets the least of the others
    (0 when none can be measured).
    """
    def tokens(extra: list[dict[str, Any]]) -> int:
        text = render_chat(tokenizer, [{"role": "user", "content": "x"}, *extra], None, add_generation_prompt=False)
        return len(tokenizer.encode(text, add_special_tokens=False))

    roles = ("user", "assistant", "system", "tool")
    costs: dict[str, int] = {}
    for role in roles:
        message = {"role": role, "content": ""} | ({"tool_call_id": "c"} if role == "tool" else {})
        try:
            costs[role] = max(0, (tokens([message] * 6) - tokens([message] * 2)) // 4)
        except Exception:  # the template refuses this run (say, roles that must alternate): no bound from it
            continue
    least = min(costs.values(), default=0)
    return {role: costs.get(role, least) for role in roles}


def _replace_surrogates(value: Any) -> Any:
    """``value`` (decoded JSON) with every lone surrogate in its strings and keys replaced by U+FFFD."""
    def clean(text: str) -> str:
        return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text

    if isinstance(value, str):
        return clean(value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            for i, child in enumerate(item):
                if isinstance(child, str):
                    item[i] = clean(child)
                elif isinstance(child, (list, dict)):
                    stack.append(child)
        elif isinstance(item, dict):
            for key in [k for k in item if _SURROGATES.search(k)]:
                item[clean(key)] = item.pop(key)
            for key, child in item.items():
                if isinstance(child, str):
                    item[key] = clean(child)
                elif isinstance(child, (list, dict)):
                    stack.append(child)
    return value


def _decode_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 400 saying why not (never another exception)."""
    request, problem = decode_json(raw or b"{}", max_depth=MAX_BODY_DEPTH)
    if problem:
        raise RequestError(f"the body is {problem}")
    if not isinstance(request, dict):
        raise RequestError("the body must be a JSON object")
    return _replace_surrogates(request)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class _ChoiceStream:
    """One choice of a streamed completion: decodes its tokens as they come and says what text is safe to send."""

    def __init__(self, server: PolicyServer, prepared: _Prepared) -> None:
        self.tokenizer = server.tokenizer
        self.stop_ids = set(server.stop_ids)
        self.holds = list(prepared.stops) + (["<tool_call>"] if prepared.parse_tools else [])
        self.ids: list[int] = []
        self.sent = ""
        self.halted = False  # a stop string or a tool call began: nothing more goes out as it comes

    def add(self, token: int) -> str:
        if self.halted or token in self.stop_ids:
            return ""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest of it
            return ""
        cut = min((p for p in (text.find(h) for h in self.holds) if p >= 0), default=-1)
        if cut >= 0:
            self.halted = True
            safe = text[:cut]
        else:
            keep = max((k for h in self.holds for k in range(len(h), 0, -1) if text.endswith(h[:k])), default=0)
            safe = text[:len(text) - keep]
        if not safe.startswith(self.sent) or len(safe) <= len(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent):], safe
        return delta

    def close(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The last deltas: the content not sent yet, and the parsed tool calls."""
        out: list[dict[str, Any]] = []
        content = message.get("content") or ""
        rest = content[len(self.sent):] if content.startswith(self.sent) else ""
        if rest:
            out.append({"content": rest})
        if message.get("tool_calls"):
            out.append({"tool_calls": [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]})
        return out


def _int(request: Mapping[str, Any], key: str, default: int, *, low: int, high: int | None = None,
         value: Any = None) -> int:
    value = request.get(key, default) if value is None else value
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise RequestError(f"'{key}' must be an integer in [{low}, {high if high is not None else '...'}]",
                           param=key)
    return value


def _bool(request: Mapping[str, Any], key: str) -> bool:
    value = request.get(key)
    if value is not None and not isinstance(value, bool):
        raise RequestError(f"'{key}' must be a boolean", param=key)
    return bool(value)


def _float(request: Mapping[str, Any], key: str, default: float, *, low: float, high: float) -> float:
    value = request.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"'{key}' must be a number in [{low}, {high}]", param=key)
    return float(value)


class _HTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once (more get 503), a listen backlog that
    takes bursts."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, backlog: int,
                 max_connections: int) -> None:
        self.request_queue_size = int(backlog)  # read by server_activate() inside __init__
        self._connections = threading.BoundedSemaphore(int(max_connections))
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            body = json.dumps(RequestError("too many connections; retry later", status=503).body()).encode()
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                                + body)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


def make_http_server(server: PolicyServer, host: str = "127.0.0.1", port: int = 8000, *,
                     max_body_bytes: int = MAX_BODY_BYTES, idle_timeout_s: float = 30.0, backlog: int = 512,
                     max_connections: int = 512) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for ``server``; port 0 picks a free one (``.server_address``).

    Args:
        max_body_bytes: larger bodies get 413 unread (and the connection is closed).
        idle_timeout_s: a connection that sends nothing for this long is closed; a request's line and headers
            must arrive within it (however slowly their bytes trickle in: then 408 and the connection is
            closed), and so must its body.
        backlog: the listen queue (connections the kernel holds while every thread is busy).
        max_connections: connections served at once; more get 503 and are closed.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "execgym-serve"
        timeout = idle_timeout_s  # the socket timeout: idle keep-alive connections and slow clients end

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s - %s", self.address_string(), format % args)

        def setup(self) -> None:
            super().setup()
            self.rfile = _DeadlineReader(self.rfile, self.connection, idle_timeout_s)

        def handle_one_request(self) -> None:
            # One deadline for the request line and the headers (the socket timeout alone bounds each read, so a
            # sender of a byte a second would hold the connection forever); parse_request lifts it.
            self.rfile.arm(idle_timeout_s)
            try:
                super().handle_one_request()  # a missed deadline is a TimeoutError: it closes the connection
            finally:
                self.rfile.disarm()
            if self.rfile.expired and self.rfile.partial:  # a request began and stalled: say so, then close
                self.close_connection = True
                body = RequestError(f"the request line and headers did not arrive within {idle_timeout_s:g} s",
                                    status=408).body()
                with contextlib.suppress(OSError):
                    self.wfile.write(_raw_response(408, "Request Timeout", body))

        def parse_request(self) -> bool:
            ok = super().parse_request()  # reads the headers, under the deadline
            self.rfile.disarm()
            return ok

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The stdlib's errors (bad request line, headers too long, unsupported method, ...) as JSON."""
            self.close_connection = True
            if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
                self.request_version = "HTTP/1.1"  # a status line and headers, even for a garbled request line
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Error"
            data = json.dumps(RequestError(message or phrase, status=code).body()).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(data)

        def _send(self, status: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> str:
            return self.path.split("?")[0].rstrip("/")

        def do_GET(self) -> None:
            path = self._route()
            if path in ("/v1/models", "/models"):
                self._send(200, server.models())
            elif path in ("/health", "/v1/health"):
                self._send(200, {"status": "ok", "model": server.model_name})
            else:
                self._send(404, RequestError(f"no route GET {path}", status=404).body())

        def _refuse_method(self) -> None:
            self.close_connection = True  # a body we do not read must not be taken for the next request
            data = json.dumps(RequestError(f"method {self.command} is not allowed", status=405).body()).encode()
            self.send_response(405)
            self.send_header("Allow", "GET, POST")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":  # a HEAD response has no body
                self.wfile.write(data)

        do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse_method

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise RequestError("send the body with a Content-Length (no Transfer-Encoding)", status=411)
            headers = self.headers.get_all("Content-Length") or []
            if not headers:
                self.close_connection = True
                raise RequestError("a POST needs a Content-Length header", status=411)
            header = headers[0].strip()
            if not _ASCII_DIGITS.fullmatch(header):  # str.isdigit() takes "²" and "٣", int() takes "1_0"
                self.close_connection = True
                raise RequestError(f"Content-Length must be a non-negative integer, got {header[:40]!r}")
            if any(h.strip() != header for h in headers[1:]):
                self.close_connection = True
                raise RequestError("the request has Content-Length headers that disagree")
            digits = header.lstrip("0")
            length = int(digits) if len(digits) <= 18 else max_body_bytes + 1  # no huge int() on a header
            if length > max_body_bytes:
                self.close_connection = True
                raise RequestError(f"request body of {length} bytes is over the limit of {max_body_bytes}",
                                   status=413)
            chunks, got = [], 0
            deadline = time.monotonic() + idle_timeout_s
            try:
                while got < length:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.close_connection = True
                        raise RequestError(f"the body did not arrive within {idle_timeout_s:g} s", status=408)
                    self.connection.settimeout(left)  # no read outlasts the body's deadline
                    chunk = self.rfile.read1(min(length - got, 1 << 16))
                    if not chunk:
                        self.close_connection = True
                        raise RequestError(f"the body ended after {got} of {length} bytes")
                    chunks.append(chunk)
                    got += len(chunk)
            finally:
                self.connection.settimeout(idle_timeout_s)
            return b"".join(chunks)

        def do_POST(self) -> None:
            path = self._route()
            try:
                try:
                    raw = self._read_body()
                except TimeoutError:
                    self.close_connection = True
                    raise RequestError(f"the body did not arrive within {idle_timeout_s:g} s", status=408) from None
                if path not in ("/v1/chat/completions", "/chat/completions"):
                    raise RequestError(f"no route POST {path}", status=404)
                request = _decode_body(raw)
                if request.get("stream") is True:
                    prepared = server.prepare(request)  # any problem with the request: a 4xx
                    chunks = server.stream(prepared)
                    first = next(chunks)  # a request refused now still gets its status code
                    self._stream(first, chunks)
                    return
                response = server.complete(request)  # prepare (a 4xx for any problem), then finish
            except RequestError as exc:
                self._send(exc.status, exc.body())
                return
            except Exception as exc:  # past prepare: a bug in the server or in generation
                log.exception("request failed")
                self._send(500, RequestError(f"{type(exc).__name__}: {exc}", status=500).body())
                return
            self._send(HTTPStatus.OK, response)

        def _stream(self, first: dict[str, Any], chunks: Iterator[dict[str, Any]]) -> None:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(_sse(first))
                self.wfile.flush()
                for chunk in chunks:
                    self.wfile.write(_sse(chunk))
                    self.wfile.flush()
            except RequestError as exc:  # headers are out: the error goes in the stream, as OpenAI's does
                self.wfile.write(_sse(exc.body()))
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                return  # the client went away
            except Exception as exc:
                log.exception("streaming failed")
                self.wfile.write(_sse(RequestError(f"{type(exc).__name__}: {exc}", status=500).body()))
            self.wfile.write(b"data: [DONE]\n\n")

    return _HTTPServer((host, port), Handler, backlog=backlog, max_connections=max_connections)


def _sse(obj: Mapping[str, Any]) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode("utf-8", "replace")


def _raw_response(status: int, phrase: str, body: Mapping[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


class _DeadlineReader:
    """A connection's buffered reader whose ``readline`` keeps to a deadline while it is armed.

    Each socket read waits at most the time left (and at most the idle timeout), and a line is read one socket
    read at a time, so a sender that trickles a byte now and then cannot stretch a line, or a request's
    headers, past the deadline: then :class:`TimeoutError`, which the stdlib handler answers by closing the
    connection. Everything else goes to the underlying reader.
    """

    def __init__(self, raw: Any, sock: Any, idle_timeout_s: float) -> None:
        self._raw = raw
        self._sock = sock
        self._idle = idle_timeout_s
        self._deadline: float | None = None
        self.expired = False  # the last armed deadline passed
        self.partial = False  # bytes of a request arrived while it was armed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def arm(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds
        self.expired = self.partial = False

    def disarm(self) -> None:
        if self._deadline is not None:
            self._deadline = None
            with contextlib.suppress(OSError):
                self._sock.settimeout(self._idle)

    def readline(self, limit: int = -1) -> bytes:
        if self._deadline is None:
            return self._raw.readline(limit)
        out = bytearray()
        while limit < 0 or len(out) < limit:
            left = self._deadline - time.monotonic()
            if left <= 0:
                self.expired = True
                raise TimeoutError("the request line and headers did not arrive in time")
            self._sock.settimeout(min(left, self._idle))
            try:
                data = self._raw.peek(1)  # what is buffered, or at most one socket read
            except TimeoutError:
                self.expired = time.monotonic() >= self._deadline
                raise
            if not data:
                break  # the client closed the connection
            want = len(data) if limit < 0 else min(len(data), limit - len(out))
            end = data.find(b"\n", 0, want)
            out += self._raw.read(want if end < 0 else end + 1)  # from the buffer: no socket read
            self.partial = True
            if end >= 0:
                break
        return bytes(out)


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          device: str = "auto", dtype: str = "auto", max_batch: int = 32, default_max_tokens: int = 512,
          trust_remote_code: bool = False, idle_timeout_s: float = 30.0, max_body_bytes: int = MAX_BODY_BYTES,
          generation_timeout_s: float = 600.0) -> None:
    """Load ``model`` and serve it until interrupted."""
    loaded, tokenizer = load_policy(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    policy = PolicyServer(loaded, tokenizer, model_name=model_name or str(model), max_batch=max_batch,
                          default_max_tokens=default_max_tokens, generation_timeout_s=generation_timeout_s)
    httpd = make_http_server(policy, host, port, idle_timeout_s=idle_timeout_s, max_body_bytes=max_body_bytes)
    bound_host, bound_port = httpd.server_address[:2]
    print(f"serving {policy.model_name} on http://{bound_host}:{bound_port}/v1 "
          f"({next(loaded.parameters()).device}, {next(loaded.parameters()).dtype})", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        policy.close()
