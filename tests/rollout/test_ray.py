"""The Ray backend on a local cluster: results and trajectories as a local run gives them; a killed actor
loses no finished episode, its unfinished one is retried once and otherwise reported as infra_error."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray", reason='the Ray backend needs ray (pip install "execgym[ray]")')

from execgym.rollout.ray import RayRollout, run_baseline_ray  # noqa: E402
from execgym.rollout.runner import run_baseline  # noqa: E402

ENV = "execgym/TextToSQL-v0"


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_results_summary_and_trajectories_match_a_local_run(tmp_path):
    local, local_results = run_baseline(ENV, "oracle", 5, seed=0, out_dir=tmp_path / "local")
    remote, remote_results = run_baseline_ray(ENV, "oracle", 5, seed=0, out_dir=tmp_path / "ray", num_workers=2)
    strip = lambda s: {k: v for k, v in vars(s).items() if k != "seconds_per_episode"}  # noqa: E731
    assert strip(remote) == strip(local)
    assert [(r.task_id, r.seed, r.outcome, r.turns) for r in remote_results] == [
        (r.task_id, r.seed, r.outcome, r.turns) for r in local_results]
    name = "execgym_TextToSQL-v0__oracle.jsonl"
    lines = {d: [json.loads(x) for x in (tmp_path / d / name).read_text().splitlines()] for d in ("local", "ray")}
    keys = ("env_id", "task_id", "seed", "reset_observation", "outcome", "return", "messages")
    assert [{k: r[k] for k in keys} for r in lines["ray"]] == [{k: r[k] for k in keys} for r in lines["local"]]
    assert [[s["action"] for s in r["steps"]] for r in lines["ray"]] == [
        [s["action"] for s in r["steps"]] for r in lines["local"]]


def test_ray_takes_reward_wrappers_as_the_local_backends_do():
    wrappers = ['GatedReward:{"components": {"format": 0.5}}']
    local, local_results = run_baseline(ENV, "oracle", 3, seed=0, wrappers=wrappers)
    remote, remote_results = run_baseline(ENV, "oracle", 3, seed=0, wrappers=wrappers, backend="ray", num_workers=2)
    assert [r.total_reward for r in remote_results] == [r.total_reward for r in local_results]
    assert all(r.total_reward > r.outcome == 1.0 for r in remote_results)  # the gated format part was paid
    assert remote.mean_reward == local.mean_reward
    with pytest.raises(ValueError, match="unknown reward wrapper 'Nope'"):
        RayRollout(ENV, "oracle", wrappers=["Nope"])


def _slow_oracle(env):
    import time

    from execgym.agents import OracleAgent

    class Slow(OracleAgent):
        def act(self, observation, info):
            time.sleep(0.3)
            return super().act(observation, info)

    return Slow(env)


def test_a_killed_actor_loses_no_finished_episode_and_its_episode_is_retried():
    finished: list[int] = []
    with RayRollout(ENV, _slow_oracle, num_workers=2) as rollout:
        def on_episode(index, result):
            finished.append(index)
            if len(finished) == 1:  # mid-run: the other actor is playing an episode right now
                for actor in list(rollout.actors):
                    ray.kill(actor, no_restart=True)

        results = rollout.run(6, seed=0, on_episode=on_episode)
        retried = list(rollout.retried)
    assert [r.seed for r in results] == list(range(6))
    assert retried, "no episode was in flight on a killed actor"
    assert all(r.infra_error is None and r.outcome == 1.0 for r in results), [r.infra_error for r in results]
    assert sorted(finished) == list(range(6))


def _dies_on_the_doomed_task(env):
    import os

    from execgym.agents import OracleAgent

    class Doomed(OracleAgent):
        def reset(self, info):
            super().reset(info)
            self.doomed = info["task_id"] == os.environ["EXECGYM_TEST_DOOMED_TASK"]

        def act(self, observation, info):
            if self.doomed:
                os._exit(1)  # the actor's process dies mid-episode, every time
            return super().act(observation, info)

    return Doomed(env)


def test_an_episode_whose_actor_dies_twice_is_reported_as_infra_error():
    import gymnasium as gym

    env = gym.make(ENV)
    doomed = env.reset(seed=2)[1]["task_id"]
    env.close()
    with RayRollout(ENV, _dies_on_the_doomed_task, num_workers=2,
                    actor_options={"runtime_env": {"env_vars": {"EXECGYM_TEST_DOOMED_TASK": doomed}}}) as rollout:
        results = rollout.run(4, seed=0)
        assert rollout.retried == [2]
    assert [r.seed for r in results] == [0, 1, 2, 3]
    assert results[2].infra_error is not None and results[2].infra_error.startswith("actor died")
    assert results[2].outcome == 0.0
    assert all(r.infra_error is None and r.outcome == 1.0 for i, r in enumerate(results) if i != 2)


def test_cli_run_with_the_ray_backend(tmp_path):
    import io

    from execgym.cli import main

    out = io.StringIO()
    code = main(["run", "--env", "TextToSQL", "--agent", "oracle", "--episodes", "3", "--backend", "ray",
                 "--workers", "2", "--out", str(tmp_path)], out=out)
    assert code == 0
    table = out.getvalue()
    assert "TextToSQL-v0" in table and "1.00 [" in table
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary[0]["episodes"] == 3 and summary[0]["success_rate"] == 1.0
    assert len((tmp_path / "execgym_TextToSQL-v0__oracle.jsonl").read_text().splitlines()) == 3


def _hangs_on_seed_1(env):
    import time

    from execgym.agents import OracleAgent

    class Stuck(OracleAgent):
        def act(self, observation, info):
            if self.env.unwrapped.np_random_seed == 1:
                time.sleep(30)  # a model server that never answers (bounded, so the actor's thread ends)
            return super().act(observation, info)

    return Stuck(env)


def test_a_hung_agent_in_an_actor_is_an_agent_timeout_and_the_run_returns():
    with RayRollout(ENV, _hangs_on_seed_1, num_workers=2, act_timeout_s=10.0) as rollout:
        results = rollout.run(4, seed=0)
        assert rollout.retried == []
    assert [r.seed for r in results] == [0, 1, 2, 3]
    assert results[1].agent_error == "AgentTimeout: agent.act did not return within 10 s"
    assert results[1].infra_error is None and results[1].outcome == 0.0
    assert all(r.agent_error is None and r.outcome == 1.0 for i, r in enumerate(results) if i != 1)
