"""Host-side analysis of the agent's files is bounded (issue 15 item 6).

Small files that exhaust the parser (deep nesting: RecursionError / MemoryError in ``ast`` or ``tomllib``)
or that take long to walk must not crash the env nor cost unbounded host time and memory: the analysis
runs in a child process under CPU, memory and size limits, and a file it cannot analyse scores 0 with an
``unanalysable_files`` flag (the agent's failure, never an infra error).
"""

from __future__ import annotations

import pytest

from execgym.envs.swe import grading
from execgym.envs.swe.analysis import AnalysisError, run_analysis
from execgym.envs.swe.env import SWERepairEnv
from execgym.executor import LocalExecutor

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]

BOMBS = {
    "calcy/bomb_attr.py": "x = a" + ".b" * 100_000 + "\n",  # RecursionError while building the AST
    "calcy/bomb_plus.py": "x = " + "+".join(["1"] * 100_000) + "\n",  # RecursionError
    "calcy/bomb_neg.py": "x = " + "-" * 100_000 + "1\n",  # MemoryError in the parser
}


def call(name: str, **arguments: object) -> dict:
    return {"name": name, "arguments": arguments}


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest):
    executor = request.getfixturevalue("_docker_executor_session") if request.param == "docker" else LocalExecutor()
    e = SWERepairEnv(executor=executor, test_timeout_s=60)
    yield e
    e.close()


@pytest.mark.parametrize("source", list(BOMBS.values()), ids=list(BOMBS))
def test_the_bombs_crash_an_unbounded_analysis(source):
    # what the grader did before: parse in its own process
    with pytest.raises((RecursionError, MemoryError)):
        grading.analyse({"before": {}, "after": {"m.py": source}, "carried": ["m.py"]})


@pytest.mark.parametrize("path", list(BOMBS), ids=list(BOMBS))
def test_a_file_the_grader_cannot_analyse_scores_zero_with_a_flag(env, path):
    task = next(t for t in env.tasks if t.data["repo"] == "calcy")
    env.reset(options={"task_id": task.id})
    for action in task.oracle:  # the real fix, plus the bomb
        if action["name"] == "submit":
            env.step(call("create", path=path, content=BOMBS[path]))
        out = env.step(action)
    info = out[4]
    assert info["infra_error"] is None
    assert out[1] == 0.0 and info["reward_components"]["f2p"] == 0.0
    assert any(f.startswith("unanalysable_files") for f in info["hack_flags"]), info["hack_flags"]


def test_a_config_file_that_exhausts_tomllib_is_scored(env):
    task = next(t for t in env.tasks if t.data["repo"] == "calcy")
    env.reset(options={"task_id": task.id})
    deep = "[tool.pytest.ini_options]\nx = " + "[" * 50_000 + "]" * 50_000 + "\n"
    env.step(call("create", path="pyproject.toml", content=deep))
    for action in task.oracle:
        out = env.step(action)
    assert out[4]["infra_error"] is None and out[1] == 0.0
    assert any(f.startswith("unanalysable_files") for f in out[4]["hack_flags"]), out[4]["hack_flags"]


def test_analysis_time_is_bounded():
    # Nested literals that the hard-coded-value check walks quadratically: killed at the CPU limit.
    line = "x = " + "[" * 90 + "1234567" + "]" * 90 + "\n"
    job = {
        "before": {},
        "after": {"m.py": line * 3000},
        "carried": ["m.py"],
        "test_sources": {"t/test_a.py": "def test_a():\n    assert f() == 1234567\n"},
        "fail_to_pass": ["t/test_a.py::test_a"],
    }
    with pytest.raises(AnalysisError, match="limit|took over"):
        run_analysis(job, cpu_s=1, wall_s=30)


def test_analysis_memory_and_size_are_bounded():
    job = {"before": {}, "after": {"m.py": "x = 1\n" * 10}, "carried": ["m.py"]}
    with pytest.raises(AnalysisError, match="analysis limit"):
        run_analysis(job, max_bytes=10)
    big = {"before": {}, "after": {"m.py": "x = [" + "1," * 2_000_000 + "]\n"}, "carried": ["m.py"]}
    with pytest.raises(AnalysisError):
        run_analysis(big, memory_bytes=200 * 1024 * 1024)


def test_bounded_analysis_gives_the_same_flags():
    job = {
        "before": {"pkg/m.py": "def f():\n    return 1\n", "tests/test_m.py": "x"},
        "after": {"pkg/m.py": "import sys\ndef f():\n    sys.modules['x'] = 1\n    return 1\n", "tests/test_m.py": "y"},
        "carried": ["pkg/m.py"],
    }
    assert run_analysis(job) == grading.analyse(job)
    assert "edited_test: tests/test_m.py" in run_analysis(job)
