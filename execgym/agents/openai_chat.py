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
from execgym.agents.chat import action_to_text, to_server_messages, tools_prompt

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

    ``episode_usage`` counts the current episode's tokens and requests; ``usage`` the agent's total.

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
        self._resolved: dict[str, str] = {}  # the server's model, found once and shared by the slots
        self.tool_mode = tool_mode
        self.temperature = float(temperature)
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.top_p = top_p
        self.seed = seed
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_concurrency = int(max_concurrency)
        self.extra_body = dict(extra_body or {})
        self.usage = _Usage()
        self.episode_usage: dict[str, int] = _Usage.empty()
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] = []
        self._last_reply: dict[str, Any] | None = None
        self._rng = random.Random(seed)

    # ------------------------------------------------------------------ episode state
    def reset(self, info: dict[str, Any]) -> None:
        self.tools = list(info.get("tools") or [])
        self.messages = [dict(m) for m in info["messages"]]
        if self.tool_mode == "text" and self.tools:
            system = next((m for m in self.messages if m["role"] == "system"), None)
            block = tools_prompt(self.tools)
            if system is None:
                self.messages.insert(0, {"role": "system", "content": block})
            else:
                system["content"] = f"{system['content']}\n\n{block}"
        self.episode_usage = _Usage.empty()
        self._last_reply = None

    def _observe(self, info: dict[str, Any]) -> None:
        """Add the last step's messages: our reply as sent (ids aligned with the env's) and the env's answer."""
        if self._last_reply is None:
            return
        new = list(info.get("new_messages") or [])
        env_assistant = new[0] if new and new[0].get("role") == "assistant" else {}
        mine = dict(self._last_reply)
        env_calls = env_assistant.get("tool_calls") or []
        if mine.get("tool_calls") and len(env_calls) == len(mine["tool_calls"]):
            # the env names calls by turn; its tool messages answer those ids
            mine["tool_calls"] = [{**c, "id": e["id"]} for c, e in zip(mine["tool_calls"], env_calls)]
        self.messages.append(mine)
        self.messages.extend(dict(m) for m in new if m.get("role") != "assistant")
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
        kwargs: dict[str, Any] = {"model": self.served_model(), "messages": self.request_messages(),
                                  "temperature": self.temperature}
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        if self.tool_mode == "native" and self.tools:
            kwargs["tools"] = self.tools
        response = self._create(kwargs)
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
