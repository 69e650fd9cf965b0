"""Chat plumbing shared by the LLM agents, the server and the trainer.

* :data:`CHATML_TOOLS_TEMPLATE`: a Hermes / Qwen-style chat template (tools in the system turn,
  ``<tool_call>`` blocks in assistant turns, ``<tool_response>`` blocks for tool results);
* :func:`action_to_text` / :func:`parse_tool_calls`: structured tool calls <-> ``<tool_call>`` text;
* :func:`to_server_messages`: an env's message history -> what a strict OpenAI-compatible server accepts;
* :class:`TokenStream`: the token ids of one episode, the mask that says which of them the policy generated
  (the only ones a trainer puts loss on) and their log-probs; :class:`ChatStream` grows one exactly as a local
  policy reads and writes it, and :func:`continuation_text` is the text it (or ``execgym serve``, given the
  previous turn's ids) tokenises for the env's new messages, so no earlier turn is ever re-tokenised.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from execgym.core.actions import TOOL_CALL_BLOCK

__all__ = [
    "CHATML_TOOLS_TEMPLATE",
    "ChatStream",
    "TokenStream",
    "action_to_text",
    "continuation_text",
    "parse_tool_calls",
    "render_chat",
    "stop_strings",
    "to_server_messages",
    "tools_prompt",
]

CHATML_TOOLS_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- else %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) "
    "or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' }}{{- tool_call.name }}{{- '\", \"arguments\": ' }}"
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}"
    "{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML with Hermes-style tool calling, as Qwen2.5 writes it (so a tiny model trained here and a Qwen
model read the same layout)."""

def _call_text(name: str, arguments: Any) -> str:
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError, RecursionError):
            arguments = json.loads(arguments) if arguments.strip() else {}
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def action_to_text(action: Any) -> str:
    """Write an action (raw text, a ``{"name", "arguments"}`` dict, an OpenAI tool call or assistant
    message, or a list of calls) as the text a model would reply with.

    Example:
        >>> print(action_to_text({"name": "submit", "arguments": {"word": "apple"}}))
        <tool_call>
        {"name": "submit", "arguments": {"word": "apple"}}
        </tool_call>
        >>> action_to_text("just text")
        'just text'
    """
    if isinstance(action, str):
        return action
    if isinstance(action, Mapping) and ("tool_calls" in action or action.get("role") == "assistant"):
        parts = [action.get("content") or ""] if action.get("content") else []
        parts += [action_to_text(call) for call in action.get("tool_calls") or []]
        return "\n".join(parts)
    if isinstance(action, Mapping):
        fn = action["function"] if isinstance(action.get("function"), Mapping) else action
        return _call_text(str(fn.get("name", "")), fn.get("arguments", {}))
    if isinstance(action, (list, tuple)):
        return "\n".join(action_to_text(a) for a in action)
    raise TypeError(f"cannot write an action of type {type(action).__name__} as text")


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Split a generation into free text and OpenAI ``tool_calls`` (one per valid ``<tool_call>`` block).

    Blocks are found as the env finds them (:data:`execgym.core.actions.TOOL_CALL_BLOCK`: an unclosed last
    block, a generation cut at a stop token, runs to the end). A block that is not a JSON object with a
    ``name`` stays in the text, as vLLM's Hermes parser leaves it, so the client sees what the model wrote.

    Example:
        >>> content, calls = parse_tool_calls('ok <tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>')
        >>> content, calls[0]["function"]
        ('ok', {'name': 'f', 'arguments': '{"x": 1}'})
        >>> parse_tool_calls('<tool_call>{"name": "g", "arguments": {}}')[1][0]["function"]["name"]
        'g'
    """
    calls: list[dict[str, Any]] = []

    def take(match: re.Match[str]) -> str:
        try:
            obj = json.loads(match.group(1).strip())
        except (ValueError, RecursionError):  # invalid JSON, a huge integer, nesting too deep: not a call
            return match.group(0)
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return match.group(0)
        args = obj.get("arguments", obj.get("parameters", {}))
        calls.append({
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": obj["name"],
                         "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)},
        })
        return ""

    rest = TOOL_CALL_BLOCK.sub(take, text).strip()
    return (rest or None), calls


def tools_prompt(tools: Sequence[Mapping[str, Any]]) -> str:
    """The tools section a system prompt needs when a server is not given ``tools=`` (text tool calling)."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
        "<args-json-object>}\n</tool_call>"
    )


def to_server_messages(messages: Sequence[Mapping[str, Any]], *, native_tools: bool = True) -> list[dict[str, Any]]:
    """Map an env's message history onto what a strict OpenAI-compatible server accepts.

    * ``native_tools``: an assistant message keeps its ``tool_calls`` only when every call is answered by the
      ``tool`` messages right after it (the env answers with a ``user`` message when a reply was malformed,
      and stops running calls after a terminal one); otherwise its calls are written into its text. Tool
      messages keep only ``role``, ``tool_call_id`` and ``content``.
    * text tool calling: every call becomes a ``<tool_call>`` block in the assistant's text and consecutive
      tool results one ``user`` message of ``<tool_response>`` blocks.

    Example:
        >>> history = [{"role": "user", "content": "go"},
        ...     {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
        ...      "function": {"name": "f", "arguments": "{}"}}]},
        ...     {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "done"}]
        >>> to_server_messages(history)[2]
        {'role': 'tool', 'tool_call_id': 'c1', 'content': 'done'}
        >>> to_server_messages(history, native_tools=False)[2]["content"]
        '<tool_response>\\ndone\\n</tool_response>'
    """
    out: list[dict[str, Any]] = []
    answered_ids: set[str] = set()
    i = 0
    while i < len(messages):
        msg = messages[i]
        role = msg.get("role")
        if role == "assistant":
            calls = list(msg.get("tool_calls") or [])
            following: list[str] = []
            j = i + 1
            while j < len(messages) and messages[j].get("role") == "tool":
                following.append(str(messages[j].get("tool_call_id")))
                j += 1
            ids = [str(c.get("id")) for c in calls]
            keep = native_tools and bool(calls) and sorted(ids) == sorted(following)
            if keep:
                answered_ids = set(ids)
                out.append({"role": "assistant", "content": msg.get("content") or None,
                            "tool_calls": [{"id": c["id"], "type": "function",
                                            "function": dict(c["function"])} for c in calls]})
            else:
                answered_ids = set()
                text = "\n".join(p for p in [msg.get("content") or "", *(action_to_text(c) for c in calls)] if p)
                out.append({"role": "assistant", "content": text})
        elif role == "tool":
            if native_tools and str(msg.get("tool_call_id")) in answered_ids:
                out.append({"role": "tool", "tool_call_id": str(msg["tool_call_id"]),
                            "content": str(msg.get("content") or "")})
            else:
                block = f"<tool_response>\n{msg.get('content') or ''}\n</tool_response>"
                if out and out[-1]["role"] == "user" and out[-1].get("_responses"):
                    out[-1]["content"] += "\n" + block
                else:
                    out.append({"role": "user", "content": block, "_responses": True})
        else:
            out.append({"role": str(role), "content": str(msg.get("content") or "")})
        i += 1
    for m in out:
        m.pop("_responses", None)
    return out


def _template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat templates want tool-call arguments as objects; OpenAI messages carry them as JSON text."""
    out = []
    for msg in messages:
        m = dict(msg)
        if m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = dict(call.get("function", call))
                if isinstance(fn.get("arguments"), str):
                    with contextlib.suppress(ValueError, RecursionError):
                        fn["arguments"] = json.loads(fn["arguments"] or "{}")
                calls.append({**call, "function": fn})
            m["tool_calls"] = calls
        if m.get("content") is None:
            m["content"] = ""
        out.append(m)
    return out


def render_chat(tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None,
                *, add_generation_prompt: bool) -> str:
    """The tokenizer's chat template applied to ``messages`` (and ``tools``), as text."""
    text = tokenizer.apply_chat_template(_template_messages(messages), tools=list(tools) if tools else None,
                                         add_generation_prompt=add_generation_prompt, tokenize=False)
    if not isinstance(text, str):  # some tokenizers return a list for a single conversation
        text = text[0]
    return text


def continuation_text(tokenizer: Any, messages: Sequence[Mapping[str, Any]], before: int,
                      tools: Sequence[Mapping[str, Any]] | None, history: str, *, ended: bool) -> str:
    """The text to tokenise after a conversation's ids, for the messages that came after its first ``before``.

    ``history`` is the text of the ids so far (the prompt the policy read, then its reply, which ends
    ``messages[:before]``); ``ended``: whether the reply ended with its end-of-turn token. The answer is what
    the chat template renders after the reply: the new messages and the next turn's header. Most templates
    render the history as it was, so that is the rest of the full rendering. Some re-render past turns (Qwen3
    drops earlier reasoning; a tool call comes back with its arguments spaced differently): then it is what
    follows, in the new rendering, the end-of-turn token of the reply's turn.

    Example:
        >>> from execgym.agents.tiny import build_tokenizer
        >>> tok = build_tokenizer(["hello world"], vocab_size=300)
        >>> chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        >>> history = render_chat(tok, chat[:1], None, add_generation_prompt=True) + "hello<|im_end|>"
        >>> continuation_text(tok, [*chat, {"role": "user", "content": "again"}], 2, None, history, ended=True)
        '\\n<|im_start|>user\\nagain<|im_end|>\\n<|im_start|>assistant\\n'
    """
    full = render_chat(tokenizer, messages, tools, add_generation_prompt=True)
    if full.startswith(history):
        return full[len(history):]
    closed = render_chat(tokenizer, messages[:before], tools, add_generation_prompt=False)
    ends = stop_strings(tokenizer)
    for stop in ends:
        turns = closed.count(stop)
        if turns and full.count(stop) >= turns:
            pos = -len(stop)
            for _ in range(turns):
                pos = full.index(stop, pos + len(stop))
            return ("" if ended else stop) + full[pos + len(stop):]
    raise ValueError("the tokenizer's chat template re-renders earlier turns in a way execgym cannot follow "
                     "(the history is not a prefix of the next rendering, and turns do not end with one of "
                     f"{ends})")


class TokenStream:
    """The token ids of one episode, which of them the policy generated (``mask`` 1) and their log-probs.

    ``logprobs`` runs beside ``ids`` (0.0 where the policy did not generate) as long as every generated part
    came with its log-probs, and is None from the first that did not.

    Example:
        >>> s = TokenStream([5, 6])
        >>> s.extend([7, 8], generated=True, logprobs=[-0.5, -1.0])
        >>> s.ids, s.mask, s.logprobs, s.policy_token_count()
        ([5, 6, 7, 8], [0, 0, 1, 1], [0.0, 0.0, -0.5, -1.0], 2)
    """

    def __init__(self, ids: Sequence[int] = ()) -> None:
        self.ids: list[int] = []
        self.mask: list[int] = []
        self.logprobs: list[float] | None = []
        self.extend(ids, generated=False)

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, ids: Sequence[int], *, generated: bool, logprobs: Sequence[float] | None = None) -> None:
        """Append ids: the policy's own (``generated``, with their ``logprobs`` when known) or the context's."""
        ids = [int(t) for t in ids]
        self.ids.extend(ids)
        self.mask.extend([int(generated)] * len(ids))
        if self.logprobs is None:
            return
        if generated and logprobs is None:
            self.logprobs = None
        else:
            self.logprobs.extend([float(v) for v in logprobs] if generated and logprobs is not None
                                 else [0.0] * len(ids))

    def policy_token_count(self) -> int:
        return sum(self.mask)


class ChatStream(TokenStream):
    """The token stream of one episode as a local policy sees it, and which of its tokens it generated.

    The first prompt is the chat template applied to the env's reset messages and tools. After that the
    stream only grows: the policy's generated ids are appended as they were sampled (``mask`` 1), and each
    step's tool / user messages are appended as the template renders them after the assistant turn (``mask``
    0, see :func:`continuation_text`). So the ids a trainer scores are exactly the ids the policy read and
    wrote, with no re-tokenisation drift, and loss goes on the policy's own tokens only.

    Args:
        tokenizer: a ``transformers`` tokenizer with a chat template.
        messages: the env's reset ``info["messages"]`` (system and user).
        tools: the env's ``info["tools"]`` (OpenAI function schemas).

    Example:
        >>> from execgym.agents.tiny import build_tokenizer
        >>> tok = build_tokenizer(["hello world"], vocab_size=300)
        >>> s = ChatStream(tok, [{"role": "user", "content": "hi"}], tools=[])
        >>> reply = s.add_generated(tok.encode("hello", add_special_tokens=False) + [tok.eos_token_id])
        >>> s.add_messages([{"role": "user", "content": "again"}])
        >>> reply, sum(s.mask), s.text.endswith("<|im_start|>assistant\\n")
        ('hello', 2, True)
    """

    def __init__(self, tokenizer: Any, messages: Sequence[Mapping[str, Any]],
                 tools: Sequence[Mapping[str, Any]] | None) -> None:
        self.tokenizer = tokenizer
        self.tools = list(tools or [])
        self.messages: list[dict[str, Any]] = [dict(m) for m in messages]
        self.text = render_chat(tokenizer, self.messages, self.tools, add_generation_prompt=True)
        super().__init__(tokenizer.encode(self.text, add_special_tokens=False))
        self._stop_strings = stop_strings(tokenizer)
        self._last_ended = False

    def add_generated(self, generated: Sequence[int], logprobs: Sequence[float] | None = None) -> str:
        """Append the policy's sampled ids (a stop token included when it produced one) and their log-probs
        when known; return its reply."""
        generated = [int(t) for t in generated]
        raw = self.tokenizer.decode(generated, skip_special_tokens=False)
        reply, ended = raw, False
        for stop in self._stop_strings:
            if reply.endswith(stop):
                reply, ended = reply[: -len(stop)], True
                break
        self.extend(generated, generated=True, logprobs=logprobs)
        self.text += raw
        self.messages.append({"role": "assistant", "content": reply})
        self._last_ended = ended
        return reply

    def add_messages(self, new_messages: Sequence[Mapping[str, Any]]) -> None:
        """Append an env step's tool / user messages (not its assistant message) and the next turn's header."""
        before = len(self.messages)
        self.messages.extend(dict(m) for m in new_messages)
        tail = continuation_text(self.tokenizer, self.messages, before, self.tools, self.text, ended=self._last_ended)
        self.extend(self.tokenizer.encode(tail, add_special_tokens=False), generated=False)
        self.text += tail


def stop_strings(tokenizer: Any) -> list[str]:
    """The texts of the tokens that end an assistant turn (eos and ChatML's ``<|im_end|>``)."""
    out = []
    for tid in stop_token_ids(tokenizer):
        text = tokenizer.convert_ids_to_tokens(tid)
        if isinstance(text, str) and text and text not in out:
            out.append(text)
    return out


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Token ids that end a turn: the tokenizer's eos, ``<|im_end|>`` / ``<|eot_id|>`` and the model's eos."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for name in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        if name in vocab:
            ids.append(int(vocab[name]))
    extra = getattr(generation_config, "eos_token_id", None)
    if isinstance(extra, int):
        ids.append(extra)
    elif isinstance(extra, (list, tuple)):
        ids.extend(int(e) for e in extra)
    return list(dict.fromkeys(ids))
