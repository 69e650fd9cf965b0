"""The verl agent loop, run by verl's own rollout worker (``AgentLoopWorker.generate_sequences``) on CPU.

The rows go through verl's own ``RLHFDataset`` and ``collate_fn``; the server manager is a subclass of verl's
``LLMServerClient`` that answers ``generate(prompt_ids=...)`` with verl's ``TokenOutput``, generating (or, for the
oracle, scoring a scripted reply) with the tiny model from ``execgym init-model``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

pytest.importorskip("verl.experimental.agent_loop")
pd = pytest.importorskip("pandas")
torch = pytest.importorskip("torch")

import verl  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, _agent_loop_registry  # noqa: E402
from verl.protocol import DataProto  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402
from verl.workers.rollout.llm_server import LLMServerClient  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from execgym.agents.oracle import OracleAgent  # noqa: E402
from execgym.cli import main as cli_main  # noqa: E402
from execgym.core.errors import InfraError  # noqa: E402
from execgym.integrations import verl as ev  # noqa: E402
from execgym.rollout.episode import EpisodeSpec, make_wrapped_env, run_episode  # noqa: E402
from tests.core.toy_env import GuessEnv  # noqa: E402

pytestmark = pytest.mark.timeout(300)

BROKEN_ID = "execgym-test/VerlBroken-v0"
PROMPT_LENGTH = 4096
RESPONSE_LENGTH = 768


class BrokenGrader(GuessEnv):
    def _grade(self, submitted: bool):
        raise InfraError("the grading worker died")


class TinyServer(LLMServerClient):
    """verl's server-manager interface over the tiny HF model: samples a reply, or scores a scripted one."""

    def __init__(self, config: Any, model: Any, tokenizer: Any, script: Sequence[str] = ()) -> None:
        super().__init__(config)
        self.model, self.tokenizer = model, tokenizer
        self.script = list(script)
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.calls: list[tuple[list[int], list[int], list[float]]] = []

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       **kwargs: Any) -> TokenOutput:
        budget = int(sampling_params["max_tokens"])
        prompt = torch.tensor([prompt_ids])
        with torch.no_grad():
            if self.script:
                new = [*self.tokenizer.encode(self.script.pop(0), add_special_tokens=False), self.end_id]
            else:
                torch.manual_seed(len(self.calls))
                out = self.model.generate(prompt, max_new_tokens=min(12, budget), do_sample=True,
                                          eos_token_id=self.end_id, pad_token_id=self.end_id)
                new = out[0, len(prompt_ids):].tolist()
            new = new[:budget]
            logprobs = _logprobs(self.model, list(prompt_ids) + new, len(prompt_ids))
        self.calls.append((list(prompt_ids), new, logprobs))
        return TokenOutput(token_ids=new, log_probs=logprobs)


def _logprobs(model: Any, ids: list[int], start: int) -> list[float]:
    """The model's log-probs of ``ids[start:]`` given what precedes each."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, start - 1:-1].float().log_softmax(-1)
    return logits.gather(-1, torch.tensor(ids[start:])[:, None])[:, 0].tolist()


def _action_text(action: Any) -> str:
    """An oracle action as the text a policy would write (``<tool_call>`` blocks, or the reply itself)."""
    if isinstance(action, str):
        return action
    calls = action if isinstance(action, list) else [action]
    return "".join(f"<tool_call>{json.dumps(call)}</tool_call>" for call in calls)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("verl-tiny")
    cli_main(["init-model", "--out", str(out), "--env", "execgym/TextToSQL-v0,execgym/ToolUse-v0", "--episodes", "4",
              "--hidden-size", "32", "--layers", "1", "--heads", "2", "--vocab-size", "600"])
    return out


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def config(model_dir: Path) -> Any:
    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={model_dir}",
            f"actor_rollout_ref.rollout.prompt_length={PROMPT_LENGTH}",
            f"actor_rollout_ref.rollout.response_length={RESPONSE_LENGTH}",
            "actor_rollout_ref.rollout.name=vllm",  # only names the backend: no vLLM is started here
            "actor_rollout_ref.rollout.calculate_log_probs=true",
            f"actor_rollout_ref.rollout.agent.default_agent_loop={ev.AGENT_NAME}",
            f"data.max_prompt_length={PROMPT_LENGTH}",
        ])


@pytest.fixture
def broken_env():
    gym.register(BROKEN_ID, entry_point=BrokenGrader)
    yield BROKEN_ID
    del gym.registry[BROKEN_ID]


def _rollout(config: Any, model: Any, rows: list[dict[str, Any]], tmp_path: Path,
             script: Sequence[str] = ()) -> tuple[DataProto, AgentLoopWorker]:
    """verl's own path: parquet rows -> RLHFDataset -> collate_fn -> DataProto -> AgentLoopWorker."""
    path = tmp_path / "rows.parquet"
    pd.DataFrame(rows).to_parquet(path)
    worker = AgentLoopWorker(config, llm_client=None)
    worker.llm_client = TinyServer(config, model, worker.tokenizer, script)
    dataset = RLHFDataset(str(path), worker.tokenizer, config.data)
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(len(dataset))]))
    return asyncio.run(worker.generate_sequences(batch)), worker


def _sequence(out: DataProto, i: int) -> tuple[list[int], list[int], list[int], list[float], int]:
    """Row ``i`` unpadded: prompt ids, response ids, response mask, rollout log-probs, reward."""
    prompt_mask = out.batch["attention_mask"][i, :PROMPT_LENGTH].bool()
    length = int(out.batch["attention_mask"][i, PROMPT_LENGTH:].sum())
    prompt = out.batch["prompts"][i][prompt_mask].tolist()
    response = out.batch["responses"][i, :length].tolist()
    mask = out.batch["response_mask"][i, :length].tolist()
    logprobs = out.batch["rollout_log_probs"][i, :length].tolist()
    return prompt, response, mask, logprobs, float(out.batch["rm_scores"][i].sum())


def test_loop_is_registered_with_verl() -> None:
    assert _agent_loop_registry[ev.AGENT_NAME] == {"_target_": "execgym.integrations.verl.ExecgymAgentLoop"}


def test_tiny_model_episode_is_token_exact_and_env_tokens_carry_no_loss(config: Any, model: Any,
                                                                         tmp_path: Path) -> None:
    rows = list(ev.dataset_rows("execgym/TextToSQL-v0", 2, seed=5, env_kwargs={"max_turns": 3}))
    out, worker = _rollout(config, model, rows, tmp_path)
    calls = worker.llm_client.calls
    for i, row in enumerate(rows):
        prompt, response, mask, logprobs, reward = _sequence(out, i)
        full = prompt + response
        # The prompt is the env's first chat, rendered once with the policy's chat template and the env's tools.
        episode = ev.episode_of(row["extra_info"])
        assert out.non_tensor_batch["execgym_task_id"][i] == episode.task_id
        env = make_wrapped_env(episode.env_id, episode.env_kwargs)
        _observation, info = env.reset(seed=episode.seed, options=episode.options)
        env.close()
        assert prompt == worker.tokenizer.apply_chat_template(info["messages"], tools=info["tools"],
                                                              add_generation_prompt=True, tokenize=True,
                                                              return_dict=False)
        # The policy's tokens are exactly what the server generated for this trajectory, in order, with mask 1;
        # everything else (the env's answers, the template's boundaries) has mask 0 and log-prob 0.
        mine = [c for c in calls if full[:len(c[0]) + len(c[1])] == c[0] + c[1]]
        assert len(mine) == out.non_tensor_batch["__num_turns__"][i] // 2 == 3  # 3 replies, 2 env answers
        assert [t for t, m in zip(response, mask, strict=True) if m] == [t for c in mine for t in c[1]]
        assert sum(1 - m for m in mask) > 0
        assert all(lp == 0.0 for lp, m in zip(logprobs, mask, strict=True) if not m)
        # Fed back through the model, the assembled ids reproduce the recorded log-probs: nothing was re-tokenised.
        again = _logprobs(model, full, len(prompt))
        pairs = [(a, b) for a, b, m in zip(again, logprobs, mask, strict=True) if m]
        assert pairs and all(abs(a - b) < 1e-4 for a, b in pairs)
        assert reward == pytest.approx(sum(out.non_tensor_batch["turn_scores"][i]))
        assert out.non_tensor_batch["execgym_error"][i] is None
        assert out.non_tensor_batch["execgym_ended"][i] == 1.0


@pytest.mark.parametrize("env_id", ["execgym/ToolUse-v0", "execgym/TextToSQL-v0"])
def test_oracle_rewards_are_the_envs_own(env_id: str, config: Any, model: Any, tmp_path: Path) -> None:
    wrappers = ["HackPenalty"]
    (row,) = ev.dataset_rows(env_id, [EpisodeSpec(seed=3)], wrappers=wrappers)
    episode = ev.episode_of(row["extra_info"])
    # The env's own record of the same episode, played by the oracle through execgym's own loop.
    env = make_wrapped_env(env_id, {}, wrappers)
    own = run_episode(env, OracleAgent(env), seed=episode.seed, options=episode.options)
    script = [_action_text(a) for a in env.unwrapped.task.oracle]
    env.close()
    assert own.outcome == 1.0
    out, _worker = _rollout(config, model, [row], tmp_path, script)
    _prompt, _response, mask, _logprobs, reward = _sequence(out, 0)
    assert reward == pytest.approx(own.total_reward)
    assert out.non_tensor_batch["execgym_outcome"][0] == own.outcome
    assert out.non_tensor_batch["execgym_task_id"][0] == own.task_id
    assert out.non_tensor_batch["execgym_components"][0] == pytest.approx(own.reward_components)
    # The first chat, each scripted reply, and an env answer after each reply but the last.
    assert out.non_tensor_batch["__num_turns__"][0] == 2 * len(script)
    assert sum(mask) > 0
    assert (0 in mask) == (len(script) > 1)  # the env's tool results and user turns are in, with mask 0


def test_infra_error_is_masked_and_counted(broken_env: str, config: Any, model: Any, tmp_path: Path) -> None:
    rows = list(ev.dataset_rows(broken_env, [EpisodeSpec(options={"task_id": "word-1"})]))
    before = ev.infra_error_count()
    out, _worker = _rollout(config, model, rows, tmp_path, ['<tool_call>{"name": "submit", "arguments": '
                                                            '{"word": "river"}}</tool_call>'])
    _prompt, response, mask, _logprobs, reward = _sequence(out, 0)
    assert response and sum(mask) == 0  # none of its tokens carries loss
    assert reward == 0.0
    assert "the grading worker died" in out.non_tensor_batch["execgym_error"][0]
    assert out.non_tensor_batch["execgym_infra_error"][0] == 1.0
    assert ev.infra_error_count() == before + 1


def test_loop_entry_in_agent_loop_config_path_sets_defaults(config: Any, model: Any, tmp_path: Path) -> None:
    # The way a Ray rollout worker finds the loop: an agent_loop_config_path entry, loaded by verl, whose other keys
    # hydra hands to the loop as defaults for the rows (here: one turn, then the env grades).
    entry = tmp_path / "loops.yaml"
    entry.write_text("- name: execgym-one-turn\n  _target_: execgym.integrations.verl.ExecgymAgentLoop\n"
                     "  env_kwargs: {max_turns: 1}\n  wrappers: [HackPenalty]\n")
    rows = list(ev.dataset_rows("execgym/TextToSQL-v0", 2, agent_name="execgym-one-turn"))
    config = copy.deepcopy(config)  # the module's config stays as it was for the other tests
    config.actor_rollout_ref.rollout.agent.agent_loop_config_path = str(entry)
    out, worker = _rollout(config, model, rows, tmp_path)
    assert list(out.non_tensor_batch["__num_turns__"]) == [2, 2]
    assert list(out.non_tensor_batch["execgym_ended"]) == [1.0, 1.0]
    assert len(worker.llm_client.calls) == 2


def test_rows_name_their_episode_and_the_loop_config_fills_in() -> None:
    first = [r["extra_info"] for r in ev.dataset_rows("execgym/TextToSQL-v0", 2, seed=7)]
    again = [r["extra_info"] for r in ev.dataset_rows("execgym/TextToSQL-v0", 2, seed=7)]
    assert first == again
    assert [ev.episode_of(e).seed for e in first] == [7, 8]
    assert ev.episode_of({"execgym": {"seed": 1}}, {"env_id": "execgym/ToolUse-v0", "seed": 0}).seed == 1
    merged = ev.episode_of({"execgym": {"env_id": "a", "env_kwargs": {"max_turns": 2}}},
                           {"env_kwargs": {"max_turns": 9, "dataset": "x"}, "wrappers": ["HackPenalty"]})
    assert (merged.env_kwargs, merged.wrappers) == ({"max_turns": 2, "dataset": "x"}, ["HackPenalty"])
    with pytest.raises(ValueError, match="no env_id"):
        ev.episode_of({})
