"""A tiny causal LM built here from nothing: a byte-level BPE tokenizer trained on an env's own chats, a
Qwen2-architecture model initialised from scratch, both saved with ``save_pretrained``.

No weights can be downloaded in some places (CI, air-gapped clusters), so the reference baseline starts from
this model: it loads through the same ``from_pretrained`` path as ``Qwen/Qwen2.5-0.5B-Instruct`` would.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from tests.core.toy_env import GuessEnv
    >>> path = build_tiny_policy(tempfile.mkdtemp(), [GuessEnv()], episodes=4, vocab_size=400)
    >>> from transformers import AutoModelForCausalLM
    >>> AutoModelForCausalLM.from_pretrained(path).config.model_type
    'qwen2'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from execgym.agents.chat import CHATML_TOOLS_TEMPLATE, action_to_text, render_chat
from execgym.core import report as R

__all__ = ["SPECIAL_TOKENS", "TOOL_TOKENS", "TinyArchitecture", "build_tiny_policy", "build_tokenizer", "env_chats"]

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>"]


def _wrap(tok_object: Any) -> Any:
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=tok_object, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    tok.chat_template = CHATML_TOOLS_TEMPLATE
    tok.padding_side = "left"
    return tok


def build_tokenizer(texts: Iterable[str], *, vocab_size: int = 2048) -> Any:
    """Train a byte-level BPE on ``texts`` and wrap it as a ``transformers`` tokenizer with the ChatML
    tool-calling template (``<|im_end|>`` is its eos, ``<|endoftext|>`` its pad token).

    Example:
        >>> tok = build_tokenizer(["the cat sat on the mat"] * 20, vocab_size=300)
        >>> tok.decode(tok.encode("the mat <tool_call>", add_special_tokens=False))
        'the mat <tool_call>'
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Qwen2's normaliser and pre-tokeniser: AutoTokenizer rebuilds a qwen2 model's tokenizer with them, so
    # the tokenizer must have been trained with them for the ids to survive save / load.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return _wrap(tok)


def _byte_tokenizer() -> Any:
    """A merge-free byte tokenizer, only to render chats with the template before the real BPE exists."""
    return build_tokenizer([""], vocab_size=1)


def env_chats(envs: Sequence[gym.Env[Any, Any]], *, episodes: int = 64, seed: int = 0,
              random_fraction: float = 0.5) -> list[str]:
    """Rendered chats of oracle and random episodes on ``envs`` (the text a tokenizer should compress well).

    Oracle episodes write the oracle's actions as ``<tool_call>`` text, as a policy would; random episodes
    add the observations of failed calls and malformed replies.
    """
    from execgym.agents.oracle import OracleAgent
    from execgym.agents.random_agent import RandomAgent

    renderer = _byte_tokenizer()
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for env in envs:
        oracle = OracleAgent(env)
        randomer = RandomAgent(seed=seed)
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            tools = info[R.TOOLS]
            agent = randomer if rng.random() < random_fraction else oracle
            agent.reset(info)
            messages = list(info[R.MESSAGES])
            done = False
            while not done:
                action = action_to_text(agent.act(obs, info))
                obs, _, terminated, truncated, info = env.step(action)
                messages.append({"role": "assistant", "content": action})
                messages.extend(info[R.NEW_MESSAGES][1:])
                done = terminated or truncated
            texts.append(render_chat(renderer, messages, tools, add_generation_prompt=False))
    return texts


@dataclass(frozen=True)
class TinyArchitecture:
    """The shape of the tiny Qwen2 model (its vocabulary size is the trained tokenizer's, up to ``vocab_size``).

    Input and output embeddings are untied by default: tied, a policy-gradient step that lowers a word as an
    *answer* also moves it as *context*, which makes RL on a model this small unstable.
    """

    vocab_size: int = 2048
    """the most tokens the byte-level BPE tokenizer learns (special and tool tokens included)"""
    hidden_size: int = 128
    """the width of the model (its MLP is 4x wider)"""
    num_layers: int = 2
    """decoder layers"""
    num_heads: int = 4
    """attention heads (half as many key/value heads: grouped-query attention, as Qwen2 has)"""
    max_positions: int = 4096
    """the context length"""
    tie_embeddings: bool = False
    """share the input and output embeddings (see above for why not)"""

    def config(self, tokenizer: Any) -> Any:
        """The ``Qwen2Config`` of this shape for ``tokenizer``."""
        from transformers import Qwen2Config

        return Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.hidden_size * 4,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=max(1, self.num_heads // 2),
            max_position_embeddings=self.max_positions,
            tie_word_embeddings=self.tie_embeddings,
            bos_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )


def build_tiny_policy(out_dir: str | Path, envs: Sequence[gym.Env[Any, Any]], *, episodes: int = 64, seed: int = 0,
                      extra_texts: Iterable[str] = (), **architecture: Any) -> Path:
    """Build and save (``save_pretrained``) a from-scratch Qwen2-architecture model and its tokenizer.

    The tokenizer is trained on ``episodes`` rendered chats per env (see :func:`env_chats`) plus
    ``extra_texts``; the model's weights are random (seeded). ``architecture`` are the fields of
    :class:`TinyArchitecture` (``vocab_size``, ``hidden_size``, ``num_layers``, ...). Returns ``out_dir``.
    """
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    shape = TinyArchitecture(**architecture)
    texts = env_chats(envs, episodes=episodes, seed=seed) + list(extra_texts)
    tokenizer = build_tokenizer(texts, vocab_size=shape.vocab_size)
    config = shape.config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
