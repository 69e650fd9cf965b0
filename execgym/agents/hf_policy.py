"""HFPolicyAgent: a ``transformers`` causal LM as an execgym agent (local folder or hub id).

The prompt is the tokenizer's chat template with the env's tools; the reply is the model's raw text, which
the env parses (``<tool_call>`` blocks, fenced code). Many episodes generate in one padded batch. On a GPU
it runs in bf16 (fp16 where bf16 is missing), on CPU in float32.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from execgym.agents.base import BatchedAgent
from execgym.agents.chat import CHATML_TOOLS_TEMPLATE, ChatStream, stop_token_ids
from execgym.core import report as R
from execgym.core.trajectory import TurnTokens

__all__ = ["HFPolicyAgent", "Sampled", "generate", "load_policy", "pick_device", "pick_dtype"]

MIN_LOGPROB = -9999.0
"""The floor of a reported log-prob (a token the model gives no mass, which JSON cannot write as -inf)."""

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


@dataclass
class Sampled:
    """One prompt's continuation: the sampled ids and, when asked for, each one's log-prob and the top ones.

    Log-probs are the model's own distribution (``log_softmax`` of its raw logits, before temperature or
    top-p), the ones a trainer computes by running the ids through the model again.
    """

    token_ids: list[int]
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None


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
    logprobs: bool = False,
    top_logprobs: int = 0,
) -> list[Sampled]:
    """Sample a continuation of every prompt (left-padded batches); each ends at its first stop id (kept).

    ``temperature`` 0 decodes greedily. ``max_new_tokens`` may be one budget per prompt. ``on_token(i, id)``
    is called as each token of prompt ``i`` is sampled (streaming), up to its stop id or budget. ``logprobs``
    adds each sampled id's log-prob (and the ``top_logprobs`` likeliest ids' at each position); it keeps the
    batch's raw logits until the batch ends (steps x rows x vocabulary floats).

    Example:
        >>> import torch
        >>> from transformers import Qwen2Config, Qwen2ForCausalLM
        >>> torch.manual_seed(0) and None
        >>> m = Qwen2ForCausalLM(Qwen2Config(vocab_size=16, hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
        >>> [len(o.token_ids) <= n for o, n in zip(generate(m, [[1, 2, 3], [4]], max_new_tokens=[2, 3],
        ...                                                  stop_ids=[0], pad_id=0), [2, 3])]
        [True, True]
        >>> [out] = generate(m, [[1, 2, 3]], max_new_tokens=3, stop_ids=[0], pad_id=0, logprobs=True, top_logprobs=2)
        >>> logits = m(torch.tensor([[1, 2, 3] + out.token_ids])).logits[0, 2:-1].log_softmax(-1)
        >>> torch.allclose(logits.gather(1, torch.tensor(out.token_ids)[:, None])[:, 0],
        ...                torch.tensor(out.logprobs), atol=1e-5), len(out.top_logprobs[0])
        (True, 2)
    """
    import torch

    budgets = [int(max_new_tokens)] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    device = next(model.parameters()).device
    stops = set(int(s) for s in stop_ids)
    outputs: list[Sampled] = [Sampled([]) for _ in prompts]
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
        if logprobs:  # the raw logits, not the scores the sampler's temperature and top-p reshaped
            sampling.update(return_dict_in_generate=True, output_logits=True)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device), attention_mask=attention.to(device),
                max_new_tokens=max(budgets[i] for i in chunk), eos_token_id=sorted(stops), pad_token_id=pad_id,
                **sampling,
            )
        sequences = out.sequences if logprobs else out
        for row, i in enumerate(chunk):
            produced: list[int] = []
            for token in sequences[row, width:].tolist():
                produced.append(int(token))
                if token in stops or len(produced) >= budgets[i]:
                    break
            outputs[i] = Sampled(produced)
        if logprobs:
            _add_logprobs([outputs[i] for i in chunk], out.logits, top_logprobs)
    return outputs


def _add_logprobs(rows: Sequence[Sampled], logits: Sequence[Any], top: int) -> None:
    """Fill each row's log-probs from the per-step raw logits of its batch (one row of each step per prompt)."""
    import torch

    for row, sampled in enumerate(rows):
        n = len(sampled.token_ids)
        if not n:
            sampled.logprobs, sampled.top_logprobs = [], [] if top else None
            continue
        steps = [logits[t][row] for t in range(n)]
        logp = torch.stack(steps).float().log_softmax(-1)  # in float32, whatever the model's dtype
        chosen = logp.gather(1, torch.tensor(sampled.token_ids, device=logp.device)[:, None])[:, 0]
        sampled.logprobs = [_floor(v) for v in chosen.tolist()]
        if top:
            values, indices = logp.topk(min(top, logp.shape[-1]), dim=-1)
            sampled.top_logprobs = [[(int(t), _floor(v)) for t, v in zip(ti, vi)]
                                    for ti, vi in zip(indices.tolist(), values.tolist())]


def _floor(value: float) -> float:
    return value if math.isfinite(value) and value > MIN_LOGPROB else MIN_LOGPROB


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
        logprobs: keep each generated token's log-prob (in the stream and the turn; costs the batch's logits).

    Every slot keeps a :class:`~execgym.agents.chat.ChatStream` (``agent.slot(k).stream``): the exact ids the
    model read and wrote, with the mask of its own tokens, which the trainer scores. ``last_turn`` is the
    latest reply's :class:`~execgym.core.trajectory.TurnTokens` (None when the context was full), which
    :func:`~execgym.core.trajectory.record_agent_turn` hands to the trajectory recorder.

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
        logprobs: bool = False,
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
        self.logprobs = bool(logprobs)
        limit = getattr(model.config, "max_position_embeddings", None) or 4096
        self.max_context_tokens = int(max_context_tokens or limit)
        self.stop_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.stream: ChatStream | None = None
        self.last_turn: TurnTokens | None = None
        self.context_full = False
        self.episode_usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self._awaiting = False

    def reset(self, info: dict[str, Any]) -> None:
        self.stream = ChatStream(self.tokenizer, info[R.MESSAGES], info.get(R.TOOLS))
        self.context_full = len(self.stream) >= self.max_context_tokens
        self.episode_usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.last_turn = None
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
        new = [m for m in info.get(R.NEW_MESSAGES, []) if m.get("role") != "assistant"]
        self.stream.add_messages(new)
        if len(self.stream) >= self.max_context_tokens:
            self.context_full = True

    def _act_many(self, agents: Sequence[HFPolicyAgent], infos: Sequence[dict[str, Any]]) -> list[str]:
        for agent, info in zip(agents, infos):
            agent._observe(info)
            agent.last_turn = None
        live = [a for a in agents if not a.context_full]
        budgets = [min(self.max_new_tokens, self.max_context_tokens - len(a.stream)) for a in live]  # type: ignore[arg-type]
        outputs = generate(
            self.model, [a.stream.ids for a in live], max_new_tokens=budgets,  # type: ignore[union-attr]
            stop_ids=self.stop_ids, pad_id=int(self.tokenizer.pad_token_id), temperature=self.temperature,
            top_p=self.top_p, batch_size=self.batch_size, logprobs=self.logprobs,
        )
        replies: dict[int, str] = {}
        for agent, out in zip(live, outputs):
            stream = agent.stream
            assert stream is not None
            prompt = list(stream.ids)
            agent.episode_usage["prompt_tokens"] += len(prompt)
            agent.episode_usage["completion_tokens"] += len(out.token_ids)
            replies[id(agent)] = stream.add_generated(out.token_ids, out.logprobs)
            agent.last_turn = TurnTokens(prompt, list(out.token_ids), out.logprobs, list(stream.mask))
            if len(stream) >= self.max_context_tokens:
                agent.context_full = True
        for agent in agents:
            agent._awaiting = True
        return [replies.get(id(a), "") for a in agents]
