"""AsyncRollout: ready-first serving of many in-flight episodes, results as run_episode gives them."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

import gymnasium as gym

import execgym  # noqa: F401  (registers the env ids)
from execgym.agents import OracleAgent
from execgym.rollout import AsyncRollout, EpisodeSpec, run_episode
from tests.core.toy_env import GuessEnv

# Per task: the agent's delay per reply and the turns it takes. The throughput these make on a real machine is
# measured in benchmarks/async_rollout.py; a test asserts behaviour only (no wall-clock figure).
DELAYS = {"word-0": 0.001, "word-1": 0.002, "word-2": 0.004, "word-3": 0.008}
TURNS = {"word-0": 8, "word-1": 4, "word-2": 2, "word-3": 1}


class SlowAgent:
    """Asks for hints, then submits the word; its first reply waits until every slot's agent is thinking."""

    name = "slow"
    in_flight: threading.Barrier | None = None

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.env = env
        self.oracle = OracleAgent(env)

    def reset(self, info: dict[str, Any]) -> None:
        self.oracle.reset(info)
        self.delay = DELAYS[info["task_id"]]
        self.left = TURNS[info["task_id"]]
        self.first = True

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        if self.first and SlowAgent.in_flight is not None:
            # serial slots would never fill the barrier: it breaks (an agent error) instead of passing
            SlowAgent.in_flight.wait()
        self.first = False
        time.sleep(self.delay)
        self.left -= 1
        return self.oracle.act(observation, info) if self.left <= 0 else {"name": "hint", "arguments": {"position": 0}}


def make_guess() -> GuessEnv:
    return GuessEnv(max_turns=100)


def test_every_slot_plays_at_once_and_episodes_finish_ready_first():
    specs = [EpisodeSpec(options={"task_id": t}) for t in DELAYS]
    finished: list[str] = []
    # generous: it only has to be longer than starting four threads on a loaded machine
    SlowAgent.in_flight = threading.Barrier(len(specs), timeout=60)
    try:
        with AsyncRollout(make_guess, SlowAgent, num_slots=len(specs)) as rollout:
            results = rollout.run(specs, on_episode=lambda i, r: finished.append(r.task_id))
    finally:
        SlowAgent.in_flight = None
    assert [r.agent_error for r in results] == [None] * len(specs)  # all four agents were thinking at once
    assert [r.task_id for r in results] == list(DELAYS) and all(r.outcome == 1.0 for r in results)
    assert [r.turns for r in results] == list(TURNS.values())
    assert sorted(finished) == sorted(DELAYS)  # every episode reported as it finished, results in spec order


def test_serial_slots_would_fail_the_in_flight_check():
    """The control: with one slot the four agents never think at once, and the barrier says so."""
    SlowAgent.in_flight = threading.Barrier(2, timeout=0.5)
    try:
        with AsyncRollout(make_guess, SlowAgent, num_slots=1) as rollout:
            results = rollout.run([EpisodeSpec(options={"task_id": "word-3"})])
    finally:
        SlowAgent.in_flight = None
    assert results[0].agent_error is not None and "BrokenBarrierError" in results[0].agent_error


def test_results_match_run_episode_and_keep_spec_order():
    env = gym.make("execgym/TextToSQL-v0")
    expected = [run_episode(env, OracleAgent(env), seed=s) for s in range(5)]
    env.close()
    with AsyncRollout("execgym/TextToSQL-v0", "oracle", num_slots=3) as rollout:
        got = rollout.run(5, seed=0)
        again = rollout.run([EpisodeSpec(seed=4)])  # slots and their envs live on between runs
    strip = [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in expected]
    assert [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in got] == strip
    assert again[0].task_id == expected[4].task_id


class BrittleEnv(GuessEnv):
    """Raises from step() on a reply of 'BOOM' (a crashed env, not a bad action)."""

    built = 0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        BrittleEnv.built += 1

    def step(self, action: Any):  # type: ignore[override]
        if action == "BOOM":
            raise RuntimeError("the env fell over")
        return super().step(action)


class ScriptedAgent:
    name = "scripted"

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.oracle = OracleAgent(env)
        self.threads: set[int] = set()

    def reset(self, info: dict[str, Any]) -> None:
        self.task_id = info["task_id"]
        self.oracle.reset(info)

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        if self.task_id == "word-1":
            raise ValueError("the model server is down")
        if self.task_id == "word-2":
            return "BOOM"
        return self.oracle.act(observation, info)


def test_agent_and_env_failures_end_only_their_episode():
    BrittleEnv.built = 0
    specs = [EpisodeSpec(options={"task_id": f"word-{i}"}) for i in range(5)]
    with AsyncRollout(BrittleEnv, ScriptedAgent, num_slots=2) as rollout:
        results = rollout.run(specs)
        # one episode per slot: whichever slot the crash happened in plays on (the other slot may have taken
        # every episode after the crash, so only a second run makes both slots play)
        again = rollout.run([specs[0], specs[3]])
    assert [r.outcome for r in results] == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert results[1].agent_error == "ValueError: the model server is down" and results[1].infra_error is None
    assert results[2].infra_error == "RuntimeError: the env fell over" and results[2].agent_error is None
    assert [r.outcome for r in again] == [1.0, 1.0]
    assert BrittleEnv.built == 3  # the crashed env was replaced


def test_each_slot_creates_and_steps_its_env_on_one_thread_and_local_sandboxes_survive():
    threads: dict[int, set[int]] = {}
    lock = threading.Lock()

    class Recording(gym.Wrapper):
        def __init__(self, env: gym.Env[Any, Any]) -> None:
            super().__init__(env)
            self.created_on = threading.get_ident()

        def step(self, action: Any):  # type: ignore[override]
            with lock:
                threads.setdefault(id(self), set()).update({self.created_on, threading.get_ident()})
            return super().step(action)

    def make() -> gym.Env[Any, Any]:
        return Recording(gym.make("execgym/SWERepair-v0", executor="local"))

    with AsyncRollout(make, lambda env: OracleAgent(env), num_slots=2) as rollout:
        results = rollout.run(3, seed=0)
    assert [r.outcome for r in results] == [1.0, 1.0, 1.0], [r.infra_error for r in results]
    assert len(threads) == 2 and all(len(t) == 1 for t in threads.values())
