"""HFPolicyAgent: a ``transformers`` causal LM as an execgym agent (local folder or hub id).

The prompt is the tokenizer's chat template with the env's tools; the reply is the model's raw text, which
the env parses (``<tool_call>`` blocks, fenced code). Many episodes generate in one padded batch. On a GPU
it runs in bf16 (fp16 where bf16 is missing), on CPU in float32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from execgym.agents.base import BatchedAgent
from execgym.agents.chat import CHATML_TOOLS_TEMPLATE, ChatStream, stop_token_ids

__all__ = ["HFPolicyAgent", "generate", "load_policy", "pick_device", "pick_dtype"]

log = logging.getLogger(__name__)


def pick_device(device: str = "auto") -> Any:
    """``auto``: the first CUDA GPU when there is one, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: Any, dtype: str = "auto") -> Any:
    """``auto``: bfloat16 on a GPU that has it (float16 on one that does not), float32 on CPU."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_policy(name_or_path: str | Path, *, device: str = "auto", dtype: str = "auto",
                trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer with ``from_pretrained`` (a local folder or a hub id).

    A tokenizer without a chat template gets :data:`~execgym.agents.chat.CHATML_TOOLS_TEMPLATE`; one without
    a pad token pads with its eos.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    if not getattr(tokenizer, "chat_template", None):
        log.warning("%s has no chat template; using the ChatML tool-calling template", name_or_path)
        tokenizer.chat_template = CHATML_TOOLS_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dev = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=pick_dtype(dev, dtype),
                                                 trust_remote_code=trust_remote_code)
    model.to(dev)
    model.eval()
    return model, tokenizer


def generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int | Sequence[int],
    stop_ids: Sequence[int],
    pad_id: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    on_token: Callable[[int, int], None] | None = None,
) -> list[list[int]]:
    """Sample a continuation of every prompt (left-padded batches); each ends at its first stop id (kept).

    ``temperature`` 0 decodes greedily. ``max_new_tokens`` may be one budget per prompt. ``on_token(i, id)``
    is called as each token of prompt ``i`` is sampled (streaming), up to its stop id or budget.

    Example:
        >>> import torch
        >>> from transformers import Qwen2Config, Qwen2ForCausalLM
        >>> torch.manual_seed(0) and None
        >>> m = Qwen2ForCausalLM(Qwen2Config(vocab_size=16, hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
        >>> out = generate(m, [[1, 2, 3], [4]], max_new_tokens=[2, 3], stop_ids=[0], pad_id=0)
        >>> [len(o) <= n for o, n in zip(out, [2, 3])]
        [True, True]
    """
    import torch

    budgets = [int(max_new_tokens)] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    device = next(model.parameters()).device
    stops = set(int(s) for s in stop_ids)
    outputs: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
    for start in range(0, len(order), batch_size):
        chunk = [i for i in order[start:start + batch_size] if budgets[i] > 0]
        if not chunk:
            continue
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            p = list(prompts[i])
            ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention[row, width - len(p):] = 1
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}
        if on_token is not None:
            sampling["streamer"] = _RowStreamer(chunk, [budgets[i] for i in chunk], stops, on_token)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device), attention_mask=attention.to(device),
                max_new_tokens=max(budgets[i] for i in chunk), eos_token_id=sorted(stops), pad_token_id=pad_id,
                **sampling,
            )
        for row, i in enumerate(chunk):
            produced: list[int] = []
            for token in out[row, width:].tolist():
                produced.append(int(token))
                if token in stops or len(produced) >= budgets[i]:
                    break
            outputs[i] = produced
    return outputs


class _RowStreamer:
    """A ``transformers`` streamer for a batch: hands each row's new tokens to ``on_token(prompt index, id)``."""

    def __init__(self, rows: Sequence[int], budgets: Sequence[int], stops: set[int],
                 on_token: Callable[[int, int], None]) -> None:
        self.rows, self.budgets, self.stops, self.on_token = list(rows), list(budgets), stops, on_token
        self.counts = [0] * len(self.rows)
        self.done = [False] * len(self.rows)
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # the first call carries the prompts
            self.prompt_seen = True
            return
        for row, tokens in enumerate(value.reshape(len(self.rows), -1).tolist()):
            for token in tokens:
                if self.done[row]:
                    break
                self.counts[row] += 1
                self.done[row] = token in self.stops or self.counts[row] >= self.budgets[row]
                self.on_token(self.rows[row], int(token))

    def end(self) -> None:
        pass


class HFPolicyAgent(BatchedAgent):
    """A causal LM from ``transformers`` playing execgym episodes through its chat template.

    Args:
        model: a local folder or hub id (loaded with :func:`load_policy`), or a loaded model.
        tokenizer: the tokenizer when ``model`` is a loaded model.
        device, dtype: ``auto`` picks CUDA + bf16 when a GPU is present, CPU + float32 otherwise.
        max_new_tokens: the most tokens one reply may have.
        temperature, top_p: sampling (temperature 0: greedy).
        max_context_tokens: the longest episode context (default: the model's position limit); an episode
            that fills it gets empty replies (format errors) until the env truncates it.
        seed: seeds torch's generator (sampling).
        batch_size: prompts per generation batch.

    Every slot keeps a :class:`~execgym.agents.chat.ChatStream` (``agent.slot(k).stream``): the exact ids the
    model read and wrote, with the mask of its own tokens, which the trainer scores.

    Example:
        >>> agent = HFPolicyAgent("Qwen/Qwen2.5-0.5B-Instruct", temperature=0.7)   # doctest: +SKIP
        >>> obs, info = env.reset(seed=0); agent.reset(info)                      # doctest: +SKIP
        >>> env.step(agent.act(obs, info))                                         # doctest: +SKIP
    """

    name = "hf"

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_context_tokens: int | None = None,
        seed: int | None = None,
        batch_size: int = 64,
        trust_remote_code: bool = False,
    ) -> None:
        import torch

        if isinstance(model, (str, Path)):
            model, tokenizer = load_policy(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        elif tokenizer is None:
            raise ValueError("HFPolicyAgent: pass the tokenizer along with a loaded model")
        if seed is not None:
            torch.manual_seed(seed)
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.batch_size = int(batch_size)
        limit = getattr(model.config, "max_position_embeddings", None) or 4096
        self.max_context_tokens = int(max_context_tokens or limit)
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.stream: ChatStream | None = None
        self.context_full = False
        self.episode_usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self._awaiting = False

    def reset(self, info: dict[str, Any]) -> None:
        self.stream = ChatStream(self.tokenizer, info["messages"], info.get("tools"))
        self.context_full = len(self.stream) >= self.max_context_tokens
        self.episode_usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self._awaiting = False

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        return self._act_many([self], [info])[0]

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[dict[str, Any]], slots: Sequence[int] | None = None
    ) -> list[Any]:
        indices = list(slots) if slots is not None else list(range(len(observations)))
        if len(indices) != len(observations):
            raise ValueError(f"act_batch: {len(observations)} observations for {len(indices)} slots")
        return self._act_many([self.slot(k) for k in indices], infos)

    def _observe(self, info: dict[str, Any]) -> None:
        """Append the last step's tool / user messages to the stream (the assistant turn is already there)."""
        if self.stream is None:
            raise RuntimeError("HFPolicyAgent.act before reset")
        if not self._awaiting:
            return
        self._awaiting = False
        if self.context_full:
            return
        new = [m for m in info.get("new_messages", []) if m.get("role") != "assistant"]
        self.stream.add_messages(new)
        if len(self.stream) >= self.max_context_tokens:
            self.context_full = True

    def _act_many(self, agents: Sequence[HFPolicyAgent], infos: Sequence[dict[str, Any]]) -> list[str]:
        for agent, info in zip(agents, infos):
            agent._observe(info)
        live = [a for a in agents if not a.context_full]
        budgets = [min(self.max_new_tokens, self.max_context_tokens - len(a.stream)) for a in live]  # type: ignore[arg-type]
        outputs = generate(
            self.model, [a.stream.ids for a in live], max_new_tokens=budgets,  # type: ignore[union-attr]
            stop_ids=self.stop_ids, pad_id=int(self.tokenizer.pad_token_id), temperature=self.temperature,
            top_p=self.top_p, batch_size=self.batch_size,
        )
        replies: dict[int, str] = {}
        for agent, produced in zip(live, outputs):
            agent.episode_usage["prompt_tokens"] += len(agent.stream)  # type: ignore[arg-type]
            agent.episode_usage["completion_tokens"] += len(produced)
            replies[id(agent)] = agent.stream.add_generated(produced)  # type: ignore[union-attr]
            if len(agent.stream) >= self.max_context_tokens:  # type: ignore[arg-type]
                agent.context_full = True
        for agent in agents:
            agent._awaiting = True
        return [replies.get(id(a), "") for a in agents]
