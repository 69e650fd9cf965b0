"""The TRL adapter, tested with TRL's own code: its GRPOTrainer trains the tiny model on TextToSQL and ToolUse."""

from __future__ import annotations

import io
import itertools
import math
from typing import Any

import gymnasium as gym
import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")

from transformers.utils import get_json_schema

from execgym.core.env import AgentEnv, Grade
from execgym.core.errors import InfraError
from execgym.core.tasks import Task
from execgym.core.tools import Tool
from execgym.integrations import trl as execgym_trl

SQL = "execgym/TextToSQL-v0"
TOOLUSE = "execgym/ToolUse-v0"
# A text answer is well formed in ToolUse (it closes the user's turn): paying `format` makes rewards vary even for
# an untrained model, so the comparison below is not one of zeros only.
FORMAT_PAYS = 'ComposeReward:{"weights": {"outcome": 1.0, "format": 0.1}}'
ENV_IDS = {"sql": SQL, "tools": TOOLUSE}
WARM_STEPS = 40
"""Passes of supervised warm start over the trainer's four oracle episodes (see ``tiny_model``)."""


def _tools_of(cls: type) -> dict[str, dict]:
    """The tool schemas TRL renders for an environment class (transformers' get_json_schema of each method)."""
    instance = cls()
    return {name: get_json_schema(getattr(instance, name))["function"]
            for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


@pytest.mark.parametrize("env_id", [SQL, TOOLUSE])
def test_tool_methods_carry_the_envs_schemas(env_id: str) -> None:
    cls = execgym_trl.environment_factory(env_id, split="train")
    env = gym.make(env_id, split="train")
    env_schemas = {}
    for task_id in env.unwrapped.tasks.ids():
        env_schemas.update({t["function"]["name"]: t["function"] for t in env.reset(options={"task_id": task_id})[1]
                            ["tools"]})
    rendered = _tools_of(cls)
    assert set(rendered) == set(env_schemas)
    for name, schema in env_schemas.items():
        got = rendered[name]
        assert got["description"] == schema["description"]
        params = schema["parameters"]
        assert set(got["parameters"]["properties"]) == set(params["properties"])
        assert set(got["parameters"].get("required", [])) == set(params.get("required", []))
        for arg, prop in params["properties"].items():
            out = got["parameters"]["properties"][arg]
            # Descriptions are kept word for word (an object's fields may follow: a Python hint cannot hold them).
            assert out["description"].startswith(prop["description"])
            options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
            assert len(options) == 1 and out["type"] == options[0]["type"]
            assert out.get("nullable", False) == (len(prop.get("anyOf", [prop])) > 1)
            assert out.get("enum") == prop.get("enum")
            if "type" in options[0].get("items", {}):
                assert out["items"]["type"] == options[0]["items"]["type"]
            if "$ref" in options[0].get("items", {}):  # a nested model: its fields are in the description
                assert '"sku": {"type": "string"}' in out["description"]


@pytest.mark.parametrize("env_id, task_id", [(SQL, None), (TOOLUSE, "shop-status-00")])
def test_oracle_through_the_methods_earns_the_envs_outcome(env_id: str, task_id: str | None) -> None:
    cls = execgym_trl.environment_factory(env_id, split="train")
    env = cls()
    rows = execgym_trl.dataset(env_id, split="train", num_rows=1) if task_id is None else None
    task_id = task_id or rows[0]["task_id"]
    statement = env.reset(task_id=task_id, seed=3, prompt=[{"role": "user", "content": ""}])
    assert statement
    task = gym.make(env_id, split="train").unwrapped.tasks.get(task_id)
    final_reply = None
    for action in task.oracle:
        calls = action if isinstance(action, list | tuple) else [action] if isinstance(action, dict) else []
        if isinstance(action, str):
            final_reply = action
        for call in calls:
            getattr(env, call["name"])(**call["arguments"])
    completion = [{"role": "assistant", "content": final_reply or ""}]
    assert execgym_trl.execgym_reward([completion], [env]) == [1.0]
    record = cls.episodes[-1]
    assert (record.task_id, record.seed, record.outcome, record.infra_error) == (task_id, 3, 1.0, None)
    # A second call for the same rollout does not play or record the episode again.
    assert execgym_trl.execgym_reward([completion], [env]) == [1.0] and len(cls.episodes) == 1


def test_unfinished_episode_is_truncated_and_graded() -> None:
    cls = execgym_trl.environment_factory(SQL, split="train", max_turns=3)
    env = cls()
    env.reset(task_id=execgym_trl.dataset(SQL, split="train", num_rows=1)[0]["task_id"], seed=0)
    assert env.list_tables()  # one real call; then TRL's loop stops on a call it did not run (its iteration cap)
    stopped = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {}}]}]
    assert execgym_trl.execgym_reward([stopped], [env]) == [0.0]
    record = cls.episodes[-1]
    assert record.submitted is False and record.turns == 3 and record.infra_error is None
    assert env.list_tables().startswith("The episode is over")


class _BrokenEnv(AgentEnv):
    """Its only tool fails the way a dead sandbox does."""

    def bundled_tasks(self) -> list[Task]:
        return [Task(id="t0", prompt="Call run.")]

    def run(self, code: str) -> str:
        """Run code.

        Args:
            code: the code to run.
        """
        raise InfraError("sandbox died")

    def _tools(self, task: Task) -> list[Tool]:
        return [Tool.from_function(self.run)]

    def _grade(self, submitted: bool) -> Grade:
        return Grade(outcome=0.0)


def test_infra_error_gives_none_which_trl_drops(caplog: pytest.LogCaptureFixture) -> None:
    gym.register("execgym-test/Broken-v0", entry_point=_BrokenEnv)
    try:
        cls = execgym_trl.environment_factory("execgym-test/Broken-v0")
        env = cls()
        env.reset(task_id="t0", seed=1)
        assert "Infrastructure error" in env.run(code="1")
        metrics: dict[str, float] = {}
        rewards = execgym_trl.execgym_reward([[{"role": "assistant", "content": "done"}]], [env],
                                             log_metric=metrics.__setitem__)
    finally:
        gym.registry.pop("execgym-test/Broken-v0")
    assert rewards == [None] and metrics == {"execgym/infra_errors": 1.0}
    assert "sandbox died" in (cls.episodes[-1].infra_error or "")
    assert "1 of 1 rollouts had an infra error" in caplog.text


def test_dataset_rows_and_mixed_form() -> None:
    seeded = execgym_trl.dataset(TOOLUSE, dataset="generated:easy", seeds=[5, 6])
    again = execgym_trl.dataset(TOOLUSE, dataset="generated:easy", seeds=[5, 6])
    assert seeded["task_id"] == again["task_id"] and seeded["seed"] == [5, 6]
    assert seeded[0]["prompt"][0]["role"] == "system" and seeded[0]["prompt"][1] == {"role": "user", "content": ""}
    mixed = execgym_trl.mixed_dataset({"sql": execgym_trl.dataset(SQL, split="train", num_rows=2),
                                       "tools": execgym_trl.dataset(TOOLUSE, split="train", num_rows=2)})
    assert sorted(mixed["environment"]) == ["sql", "sql", "tools", "tools"]
    factories = execgym_trl.environment_factories({"sql": SQL, "tools": {"env_id": TOOLUSE, "split": "train"}})
    assert set(factories) == {"sql", "tools"} and "submit_sql" in vars(factories["sql"])


def _oracle_chat(cls: type, env_id: str, row: dict, tokenizer: Any) -> tuple[list[int], list[int]]:
    """A task's oracle episode as TRL renders it (the class's tools in the prompt): token ids, assistant mask."""
    import inspect

    env = cls()
    tools = [getattr(env, name) for name, _ in inspect.getmembers(cls, predicate=inspect.isfunction)
             if not name.startswith("_") and name != "reset"]  # the tools, in the order TRL lists them
    messages = [row["prompt"][0], {"role": "user", "content": env.reset(**row)}]
    answer = "Done."
    for action in gym.make(env_id, split="train").unwrapped.tasks.get(row["task_id"]).oracle:
        if isinstance(action, str):
            answer = action
            continue
        calls = list(action) if isinstance(action, list | tuple) else [action]
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [{"type": "function", "function": call} for call in calls]})
        messages += [{"role": "tool", "name": c["name"], "content": getattr(env, c["name"])(**c["arguments"])}
                     for c in calls]
    messages.append({"role": "assistant", "content": answer})
    ids: list[int] = []
    mask: list[int] = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:k], tools=tools, add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
        ids = tokenizer.apply_chat_template(messages[: k + 1], tools=tools, return_dict=True)["input_ids"]
        mask += [0] * (len(before) - len(mask))
        mask += [1] * (len(ids) - len(mask))
    return ids, mask


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``execgym init-model``'s tiny model, warm-started on the oracle episodes of the rows the trainer plays.

    Untrained, it never writes a tool call and every rollout of a group earns the same reward (no gradient);
    a few steps of supervised warm start make it call the env's tools through TRL's own tool loop.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from execgym.cli import main

    out = str(tmp_path_factory.mktemp("tiny"))
    assert main(["init-model", "--out", out, "--env", f"{SQL},{TOOLUSE}", "--episodes", "8", "--vocab-size", "600",
                 "--hidden-size", "32", "--layers", "1", "--heads", "2"], out=io.StringIO()) == 0
    tokenizer = execgym_trl.prepare_tokenizer(AutoTokenizer.from_pretrained(out))
    model = AutoModelForCausalLM.from_pretrained(out)
    factories, rows = _run_setup()
    chats = [_oracle_chat(factories[row["environment"]], ENV_IDS[row["environment"]], row, tokenizer) for row in rows]
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(WARM_STEPS):
        for ids, mask in chats:
            labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask, strict=True)]])
            loss = model(torch.tensor([ids]), labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.save_pretrained(out)
    return out


def _run_setup() -> tuple[dict[str, type], Any]:
    """The trainer's environments (both envs in one run, the dict form) and its mixed dataset of four rows."""
    sql_rows = execgym_trl.dataset(SQL, split="train", num_rows=2)
    tool_rows = execgym_trl.dataset(TOOLUSE, split="train", num_rows=2)
    factories = execgym_trl.environment_factories({
        "sql": {"env_id": SQL, "split": "train", "max_turns": 3},
        # Only the tools of the rows' domain are shown (a shorter prompt than every domain's tools).
        "tools": {"env_id": TOOLUSE, "split": "train", "max_turns": 3, "wrappers": [FORMAT_PAYS],
                  "tool_rows": list(tool_rows)},
    })
    return factories, execgym_trl.mixed_dataset({"sql": sql_rows, "tools": tool_rows})


@pytest.mark.slow
def test_grpo_trainer_trains_on_sql_and_tooluse(tiny_model: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL's GRPOTrainer runs 2 optimizer steps over both envs; the rewards it logs are the env's returns."""
    import pandas as pd
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    factories, rows = _run_setup()
    tokenizer = execgym_trl.prepare_tokenizer(AutoTokenizer.from_pretrained(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(tiny_model)

    logged: list[dict[str, float]] = []
    counts = [(0, 0)]  # episodes recorded by each factory when each optimizer step ended

    class Keep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            counts.append((len(factories["sql"].episodes), len(factories["tools"].episodes)))

        def on_log(self, args, state, control, logs=None, **kwargs):
            logged.append(dict(logs or {}))

    config = GRPOConfig(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=2,
        gradient_accumulation_steps=1, max_completion_length=160, max_tool_calling_iterations=2, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False, seed=0,
        log_completions=True, num_completions_to_print=0, dataloader_num_workers=0, temperature=1.0,
    )
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=execgym_trl.execgym_reward,
                          args=config, train_dataset=rows, environment_factory=factories, callbacks=[Keep()])
    trainer.train()

    assert trainer.state.global_step == 2
    records = [*factories["sql"].episodes, *factories["tools"].episodes]
    assert len(records) == 2 * 4  # two steps of four rollouts, each one recorded episode
    assert all(r.infra_error is None and r.turns >= 1 for r in records)
    assert {r.task_id for r in factories["sql"].episodes} <= set(rows["task_id"])
    # Without wrappers the reward is the grader's outcome itself.
    assert all(r.reward == r.outcome for r in factories["sql"].episodes)
    # The warm-started model called the env's tools through TRL's tool loop (the generated methods).
    assert any(entry.get("tools/call_frequency", 0) > 0 for entry in logged)
    sql, tools = list(factories["sql"].episodes), list(factories["tools"].episodes)
    played = [sql[a[0]:b[0]] + tools[a[1]:b[1]] for a, b in itertools.pairwise(counts)]
    assert [len(step) for step in played] == [4, 4]
    # Per rollout: TRL's completion log of each step (its parquet table, with the task id and outcome the reward
    # function logged beside the reward) holds the rewards the envs recorded for those episodes.
    for step, episodes in enumerate(played, 1):
        table = pd.read_parquet(tmp_path / "completions" / f"completions_{step:05d}.parquet")
        logged_rows = sorted(zip(table["task_id"], table["execgym_reward"], table["outcome"], strict=True))
        recorded = sorted((r.task_id, r.reward, r.outcome) for r in episodes)
        assert [row[0] for row in logged_rows] == [row[0] for row in recorded]
        for column in (1, 2):  # TRL keeps rewards as float32
            assert [row[column] for row in logged_rows] == pytest.approx([row[column] for row in recorded], rel=1e-6)
    # Per step: the mean reward TRL logged is the mean of that step's episodes.
    step_means = [entry["rewards/execgym_reward/mean"] for entry in logged if "rewards/execgym_reward/mean" in entry]
    assert step_means == pytest.approx([math.fsum(r.reward for r in step) / 4 for step in played])
