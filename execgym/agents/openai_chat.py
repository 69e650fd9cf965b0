"""OpenAIChatAgent: any OpenAI-compatible chat-completions server (OpenAI, vLLM, SGLang, ``execgym serve``)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from execgym.agents.base import BatchedAgent
from execgym.agents.chat import TokenStream, action_to_text, to_server_messages, tools_prompt
from execgym.core import report as R
from execgym.core.trajectory import TurnTokens

__all__ = ["OpenAIChatAgent"]

_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIChatAgent(BatchedAgent):
    """Plays episodes through an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    The conversation starts from the reset ``info["messages"]`` and grows by each step's
    ``info["new_messages"]`` (the assistant turn as the server returned it, then the env's tool / user
    messages), mapped onto what a strict server accepts (:func:`~execgym.agents.chat.to_server_messages`).

    Args:
        model: the served model's name; None: the server's only model (its ``/v1/models`` list, read on the
            first ``act``; a server listing several needs one named).
        base_url: the server, e.g. ``http://127.0.0.1:8000/v1`` (default: ``OPENAI_BASE_URL`` or OpenAI's).
        api_key: default ``OPENAI_API_KEY``, or ``"EMPTY"`` for local servers.
        tool_mode: ``native`` passes ``tools=`` and acts with the returned assistant message (its
            ``tool_calls``), falling back to the reply's text when it has none; ``text`` describes the tools
            in the system prompt and acts with the raw text (``<tool_call>`` blocks the env parses).
        temperature, max_tokens, top_p, seed: sampling parameters sent with every request.
        max_retries, backoff_s, timeout_s: retries with exponential backoff and jitter on connection errors,
            timeouts, 429 and 5xx answers.
        max_concurrency: requests in flight at once in ``act_batch``.
        extra_body: extra request fields (e.g. vLLM's ``{"top_k": 20}``).
        client: a ready ``openai.OpenAI`` client (tests, custom transports).
        token_ids: ask for the token ids and log-probs of every turn (``logprobs`` and vLLM's
            ``return_token_ids``); None: ask, and stop asking when the server refuses the fields (a 400) or
            answers without ids (OpenAI, an older vLLM); False: never ask.

    ``episode_usage`` counts the current episode's tokens and requests; ``usage`` the agent's total.

    Token-exact turns: when the server returns ids (``execgym serve``, vLLM), each turn is kept as a
    :class:`~execgym.core.trajectory.TurnTokens` (``turns``, the latest as ``last_turn``, which
    :func:`~execgym.core.trajectory.record_agent_turn` hands to the recorder), and ``stream`` is the episode's
    :class:`~execgym.agents.chat.TokenStream` (ids, loss mask, log-probs) a trainer scores. From the second
    turn on, the request carries ``prefix_token_ids`` (the previous prompt's ids and the ids the server
    sampled), so a server that takes them (``execgym serve``) tokenises only the new messages and every
    prompt starts with the ids of the turns before it. A server that ignores them (vLLM) re-templates the
    chat: the agent then sees a prompt that does not start with its stream, stops sending them, and starts
    the stream again from that prompt (the earlier turns' ids then carry no loss mask).

    Example:
        >>> agent = OpenAIChatAgent("Qwen/Qwen2.5-7B-Instruct", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0); agent.reset(info)                                         # doctest: +SKIP
        >>> obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))                 # doctest: +SKIP
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        tool_mode: str = "native",
        temperature: float = 0.0,
        max_tokens: int | None = 1024,
        top_p: float | None = None,
        seed: int | None = None,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 120.0,
        max_concurrency: int = 16,
        extra_body: dict[str, Any] | None = None,
        client: Any = None,
        token_ids: bool | None = None,
    ) -> None:
        if tool_mode not in ("native", "text"):
            raise ValueError(f"tool_mode must be 'native' or 'text', got {tool_mode!r}")
        if client is None:
            import openai

            client = openai.OpenAI(
                base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
                timeout=timeout_s, max_retries=0,  # retries are ours, with our backoff and accounting
            )
        self.client = client
        self.model = model
        self.token_ids = token_ids
        # what was found out about the server once, shared by the slots: its model, whether it returns token
        # ids ("tokens") and whether it takes prefix_token_ids ("prefix")
        self._resolved: dict[str, Any] = {}
        self.tool_mode = tool_mode
        self.temperature = float(temperature)
        # the other fields every request sends; one left None is the server's default
        fields = {"max_tokens": None if max_tokens is None else int(max_tokens), "top_p": top_p, "seed": seed,
                  "extra_body": dict(extra_body) if extra_body else None}
        self.request_fields: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_concurrency = int(max_concurrency)
        self.usage = _Usage()
        self.episode_usage: dict[str, int] = _Usage.empty()
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] = []
        self.stream: TokenStream | None = None
        self.turns: list[TurnTokens] = []
        self.last_turn: TurnTokens | None = None
        self._last_reply: dict[str, Any] | None = None
        self._rng = random.Random(seed)

    # ------------------------------------------------------------------ episode state
    def reset(self, info: dict[str, Any]) -> None:
        self.tools = list(info.get(R.TOOLS) or [])
        self.messages = [dict(m) for m in info[R.MESSAGES]]
        if self.tool_mode == "text" and self.tools:
            system = next((m for m in self.messages if m["role"] == "system"), None)
            block = tools_prompt(self.tools)
            if system is None:
                self.messages.insert(0, {"role": "system", "content": block})
            else:
                system["content"] = f"{system['content']}\n\n{block}"
        self.episode_usage = _Usage.empty()
        self.stream, self.turns, self.last_turn = None, [], None
        self._last_reply = None

    def _observe(self, info: dict[str, Any]) -> None:
        """Add the last step's messages: our reply as sent, then the env's tool / user messages.

        The env keeps the ids of the calls it is sent, so its tool messages answer our reply's calls as they
        are (a reply whose ids the env could not keep, duplicates say, goes to the server as text).
        """
        if self._last_reply is None:
            return
        self.messages.append(self._last_reply)
        self.messages.extend(dict(m) for m in info.get(R.NEW_MESSAGES) or [] if m.get("role") != "assistant")
        self._last_reply = None

    def request_messages(self) -> list[dict[str, Any]]:
        """The conversation as the next request sends it."""
        return to_server_messages(self.messages, native_tools=self.tool_mode == "native")

    # ------------------------------------------------------------------ acting
    def served_model(self) -> str:
        """``model``, or the one model the server lists (a ValueError when it lists none or several)."""
        if self.model is not None:
            return self.model
        if "model" not in self._resolved:
            ids = [m.id for m in self.client.models.list()]
            if len(ids) != 1:
                raise ValueError(f"the server lists {len(ids)} models ({', '.join(ids[:5]) or 'none'}); "
                                 "pass model=... to choose one")
            self._resolved["model"] = ids[0]
        return self._resolved["model"]

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        self._observe(info)
        self.last_turn = None
        kwargs: dict[str, Any] = {"model": self.served_model(), "messages": self.request_messages(),
                                  "temperature": self.temperature, **self.request_fields}
        if self.tool_mode == "native" and self.tools:
            kwargs["tools"] = self.tools
        asked = self.token_ids is not False and self._resolved.get("tokens") is not False
        response = self._create_with_tokens(kwargs) if asked else self._create(kwargs)
        if asked:
            self._keep_tokens(response)
        message = response.choices[0].message
        content = message.content or ""
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in (message.tool_calls or [])
        ]
        usage = getattr(response, "usage", None)
        counts = {"prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                  "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0), "requests": 1}
        for key, value in counts.items():
            self.episode_usage[key] += value
        self.usage.add(counts)
        if calls:
            self._last_reply = {"role": "assistant", "content": content or None, "tool_calls": calls}
            return {"role": "assistant", "content": content, "tool_calls": calls}
        # no native calls: the reply's text is the action (the env finds <tool_call> blocks or code in it)
        self._last_reply = {"role": "assistant", "content": content}
        return content

    def _create_with_tokens(self, kwargs: dict[str, Any]) -> Any:
        """The request with the token fields; when they are refused (a 400) and not required, without them."""
        import openai

        body = {**kwargs.get("extra_body", {}), "return_token_ids": True}
        prefix = self.stream is not None and self._resolved.get("prefix") is not False
        if prefix:
            body["prefix_token_ids"] = list(self.stream.ids)  # type: ignore[union-attr]
        try:
            return self._create({**kwargs, "logprobs": True, "extra_body": body})
        except openai.BadRequestError as exc:
            if self.token_ids:
                raise
            if prefix and getattr(exc, "param", None) == "prefix_token_ids":
                self._resolved["prefix"] = False  # the server takes ids but not these: re-template this turn
                return self._create_with_tokens(kwargs)
            response = self._create(kwargs)
            self._resolved["tokens"] = False  # the plain request went through: the fields were the problem
            return response

    def _keep_tokens(self, response: Any) -> None:
        """Add the turn's ids (and log-probs) to the episode's stream, and keep the turn."""
        choice = response.choices[0]
        prompt, completion = getattr(response, "prompt_token_ids", None), getattr(choice, "token_ids", None)
        if not prompt or completion is None:
            if self.token_ids is None:
                self._resolved["tokens"] = False  # a server that ignores return_token_ids: stop asking
            return
        self._resolved["tokens"] = True
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        logprobs = [float(c.logprob) for c in content] if content is not None else None
        if logprobs is not None and len(logprobs) != len(completion):
            logprobs = None
        prompt, completion = [int(t) for t in prompt], [int(t) for t in completion]
        stream = self.stream
        if stream is not None and prompt[:len(stream)] == stream.ids:
            stream.extend(prompt[len(stream):], generated=False)
        else:
            if stream is not None:
                self._resolved["prefix"] = False  # the server re-templated the chat: sending ids is no use
            stream = self.stream = TokenStream(prompt)
        stream.extend(completion, generated=True, logprobs=logprobs)
        self.last_turn = TurnTokens(prompt, completion, logprobs, list(stream.mask))
        self.turns.append(self.last_turn)

    def _create(self, kwargs: dict[str, Any]) -> Any:
        import openai

        for attempt in range(self.max_retries + 1):
            try:
                return self.client.chat.completions.create(**kwargs)
            except (openai.APIConnectionError, openai.APIStatusError) as exc:  # timeouts are connection errors
                status = getattr(exc, "status_code", None)
                retryable = status is None or status in _RETRYABLE_STATUS
                if not retryable or attempt == self.max_retries:
                    raise
                self.usage.add({"retries": 1})
                self.episode_usage["retries"] += 1
                delay = self.backoff_s * (2**attempt)
                time.sleep(delay * (0.5 + self._rng.random() / 2))
        raise AssertionError("unreachable")

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[dict[str, Any]], slots: Sequence[int] | None = None
    ) -> list[Any]:
        if self._slots is None:
            return super().act_batch(observations, infos, slots)
        indices = list(slots) if slots is not None else list(range(len(observations)))
        if len(indices) != len(observations):
            raise ValueError(f"act_batch: {len(observations)} observations for {len(indices)} slots")
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(indices)))) as pool:
            futures = [pool.submit(self._slots[k].act, o, i) for k, o, i in zip(indices, observations, infos)]
            return [f.result() for f in futures]

    def transcript(self) -> str:
        """The conversation so far as text (for logs)."""
        lines = []
        for m in self.messages:
            calls = "".join("\n" + action_to_text(c) for c in m.get("tool_calls") or [])
            lines.append(f"[{m['role']}] {m.get('content') or ''}{calls}")
        return "\n".join(lines)


class _Usage(dict):
    """Token and request counts, safe to add to from several threads (the agent's slots share one)."""

    def __init__(self) -> None:
        super().__init__(_Usage.empty())
        self._lock = threading.Lock()

    @staticmethod
    def empty() -> dict[str, int]:
        return {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "retries": 0}

    def add(self, counts: dict[str, int]) -> None:
        with self._lock:
            for key, value in counts.items():
                self[key] = self.get(key, 0) + int(value)
