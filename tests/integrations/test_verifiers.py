"""The verifiers adapter, run by verifiers' own eval entry point against ``execgym serve`` (the tiny model).

Every rollout is also recorded by execgym's own recorder and replayed in a fresh env: verifiers' score of each
rollout must be the return and outcome execgym recorded for that same episode, and the replay must reproduce it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

vf = pytest.importorskip("verifiers.v1")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from verifiers.v1.cli.eval.runner import run_eval  # noqa: E402
from verifiers.v1.configs.cli.eval import EvalConfig  # noqa: E402

from execgym.core import report as R  # noqa: E402
from execgym.core.errors import InfraError  # noqa: E402
from execgym.core.trajectory import read_trajectories, replay_file  # noqa: E402
from execgym.envs.sql.env import TextToSQLEnv  # noqa: E402
from execgym.integrations import verifiers as V  # noqa: E402

BROKEN_ID = "execgym-test/BrokenGraderSQL-v0"


class BrokenGraderSQL(TextToSQLEnv):
    """TextToSQL whose grading worker always dies: every episode ends with an ``infra_error``."""

    def _grade(self, submitted: bool) -> Any:
        raise InfraError("grading worker died")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``execgym serve`` around a tiny from-scratch model, on a free loopback port; stopped after the module."""
    model = tmp_path_factory.mktemp("tiny") / "model"
    subprocess.run([sys.executable, "-m", "execgym.cli", "init-model", "--out", str(model),
                    "--env", "execgym/TextToSQL-v0,execgym/ToolUse-v0", "--episodes", "8", "--vocab-size", "600",
                    "--hidden-size", "32", "--layers", "1", "--heads", "2"], check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "execgym.cli", "serve", "--model", str(model), "--port", "0",
                             "--served-model-name", "tiny", "--device", "cpu", "--max-tokens", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""
        assert line.startswith("serving tiny on http://127.0.0.1:"), line
        yield line.split()[3]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def broken_env() -> Iterator[str]:
    gym.register(BROKEN_ID, entry_point=BrokenGraderSQL)
    yield BROKEN_ID
    del gym.registry[BROKEN_ID]


def _evaluate(env: Any, base_url: str, out: Path) -> list[Any]:
    """verifiers' own eval entry point (what ``vf-eval`` runs), on ``env``'s config."""
    config = EvalConfig(env=env.config, model="tiny", push=False, rich=None, output_dir=out,
                        client=vf.EvalClientConfig(base_url=base_url), sampling={"max_tokens": 16, "temperature": 0.0})
    episodes = asyncio.run(run_eval(config))
    return [trace for episode in episodes for trace in episode.traces]


# ToolUse pays the format component of a final answer through a gate that always opens: a return that is not 0
GATED = 'GatedReward:{"components": {"format": 0.25}, "threshold": 0.0}'


@pytest.mark.slow

@pytest.mark.parametrize(("env_id", "wrappers"), [("execgym/TextToSQL-v0", []), ("execgym/ToolUse-v0", [GATED])])
def test_eval_scores_are_execgym_outcomes(env_id: str, wrappers: list[str], server_url: str, tmp_path: Path) -> None:
    records = tmp_path / "records"
    env = V.load_environment(env_id, num_tasks=2, seed=7, max_turns=2, wrappers=wrappers, record_dir=str(records))
    assert isinstance(env, vf.Env)
    traces = _evaluate(env, server_url, tmp_path / "out")
    assert len(traces) == 2 and all(trace.ok for trace in traces), [trace.errors for trace in traces]
    assert sorted(t.task.data.seed for t in traces) == [7, 8]
    for trace in traces:
        path = records / f"{trace.id}.jsonl"
        (record,) = list(read_trajectories(path))
        assert record[R.TASK_ID] == trace.task.data.id and record["seed"] == trace.task.data.seed
        assert record["infra_error"] is None and record["agent_error"] is None
        # the rubric pays what the env paid, and reports the outcome and the components the env reported
        assert trace.reward == record["return"] == trace.rewards["reward"].score
        assert trace.metrics[R.OUTCOME] == record[R.OUTCOME]
        if not wrappers:
            assert record["return"] == record[R.OUTCOME]
        sums: dict[str, float] = {}
        for step in record["steps"]:
            for name, value in step[R.REWARD_COMPONENTS].items():
                sums[name] = sums.get(name, 0.0) + value
        assert {k.removeprefix("component/"): v for k, v in trace.metrics.items() if k.startswith("component/")} \
            == sums
        # each env step was one model turn that verifiers recorded through its interception
        assert trace.num_turns == len(record["steps"]) == trace.metrics[R.TURNS]
        # the same actions in a fresh env (replay rebuilds the env, not the wrappers) grade alike
        (replay,) = replay_file(path)
        assert replay.replayed_return == trace.metrics[R.OUTCOME] and (replay.reproduced or wrappers), replay
    # what verifiers saved for the run carries the same scores
    lines = (next((tmp_path / "out").iterdir()) / "traces.jsonl").read_text().splitlines()
    saved = {t["id"]: t for line in lines for t in json.loads(line)["traces"]}
    assert len(saved) == 2
    for trace in traces:
        assert saved[trace.id]["rewards"]["reward"]["score"] == trace.reward
        assert saved[trace.id]["metrics"] == trace.metrics and saved[trace.id]["info"][V.INFO_KEY]["outcome"] == \
            trace.metrics[R.OUTCOME]


@pytest.mark.slow
def test_the_vf_eval_command_line_runs_it(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from verifiers.v1.cli.eval.main import main

    records, out = tmp_path / "records", tmp_path / "out"
    argv = [V.TASKSET_ID, "--env.taskset.env-id", "execgym/ToolUse-v0", "--env.taskset.num-tasks", "1",
            "--env.taskset.seed", "3", "--env.taskset.env-kwargs", '{"max_turns": 2}',
            "--env.taskset.wrappers", json.dumps([GATED]), "--env.agent.runtime.type", "subprocess",
            "--env.agent.harness.id", V.TASKSET_ID, "--env.agent.harness.record-dir", str(records),
            "-m", "tiny", "--client.base-url", server_url,
            "--sampling.max-tokens", "16", "--no-push", "--no-rich", "--output-dir", str(out)]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        main(argv)
    finally:  # the command installs its own Ctrl-C handling: give pytest its own back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    capsys.readouterr()  # the command prints every trace
    (line,) = (next(out.iterdir()) / "traces.jsonl").read_text().splitlines()
    (trace,) = json.loads(line)["traces"]
    (record,) = list(read_trajectories(records / f"{trace['id']}.jsonl"))
    assert trace["ok"] and record["seed"] == 3 and record[R.TASK_ID] == trace["task"]["data"]["id"]
    assert trace["rewards"]["reward"]["score"] == record["return"] and trace["metrics"][R.OUTCOME] == record[R.OUTCOME]


def test_task_ids_pass_through_to_the_tasks() -> None:
    env = V.load_environment("execgym/TextToSQL-v0", task_ids=["bookshop-002", "flights-031"], seed=3)
    tasks = list(env.taskset)
    assert [t.data.id for t in tasks] == ["bookshop-002", "flights-031"] and [t.data.seed for t in tasks] == [3, 4]
    plain = gym.make("execgym/TextToSQL-v0")
    try:
        observation, info = plain.reset(seed=3, options={"task_id": "bookshop-002"})
        assert tasks[0].data.prompt == observation and tasks[0].data.system_prompt == info[R.SYSTEM_PROMPT]
    finally:
        plain.close()


@pytest.mark.slow
def test_an_infra_error_is_a_failed_rollout(server_url: str, broken_env: str, tmp_path: Path) -> None:
    env = V.load_environment(broken_env, num_tasks=1, max_turns=1)
    (trace,) = _evaluate(env, server_url, tmp_path / "out")
    assert not trace.ok and trace.is_completed
    assert trace.errors[-1].type == "SandboxError" and "grading worker died" in trace.errors[-1].message
    assert trace.reward == 0 and all(reward is None for reward in trace.rewards.values())  # never scored


def test_an_unreachable_model_is_a_failed_rollout(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = V.load_environment("execgym/TextToSQL-v0", num_tasks=1, max_turns=1)
    (trace,) = _evaluate(env, f"http://127.0.0.1:{port}/v1", tmp_path / "out")
    # verifiers records its own provider error (the one its interception saw) ahead of the harness's
    assert not trace.ok and trace.stop_condition == "provider_error" and trace.errors[-1].type == "ProviderError"
    assert V.INFO_KEY not in trace.info
