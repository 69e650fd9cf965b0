"""The command line's loud failures: agent and infra errors in the run table, bad input in one line, never a
traceback; ``--out`` never mixes two runs; ``play`` on Ctrl-C, truncation, malformed JSON and nested tool types."""

from __future__ import annotations

import io
import json
import socket
import sys

import gymnasium as gym
import pytest

import execgym
from execgym.cli import main, resolve_env_id, schema_type
from execgym.core.errors import InfraError
from execgym.rollout.episode import EpisodeResult
from execgym.rollout.runner import format_table, summarise
from tests.core.toy_env import GuessEnv

TEST_ID = "execgym-test/GuessCLIErr-v0"
BROKEN_ID = "execgym-test/BrokenGrader-v0"
FLAKY_ID = "execgym-test/FlakyGrader-v0"
FALLS_ID = "execgym-test/FallsOver-v0"
EXEC_ID = "execgym-test/WithExecutor-v0"
CANNOT_ID = "execgym-test/CannotBuild-v0"


class BrokenGraderEnv(GuessEnv):
    """Every grading fails on the machinery (a grader that cannot start)."""

    def _grade(self, submitted: bool):
        raise InfraError("the grading worker died")


class FlakyGraderEnv(GuessEnv):
    """Grading fails on the machinery for one of the words only."""

    def _grade(self, submitted: bool):
        if self.task.id == "word-2":
            raise InfraError("the grading worker died")
        return super()._grade(submitted)


class FallsOverEnv(GuessEnv):
    """Builds fine, but its reset raises: a crash of the env itself in the middle of a run."""

    def reset(self, *, seed=None, options=None):
        raise RuntimeError("the env fell over")


class WithExecutorEnv(GuessEnv):
    """An env that runs code: it takes ``executor`` (and remembers it)."""

    seen: list = []

    def __init__(self, *, executor=None, **kwargs):
        WithExecutorEnv.seen.append(executor)
        super().__init__(**kwargs)


class CannotBuildEnv(GuessEnv):
    """An env whose construction fails for a reason other than bad input (a broken install)."""

    def __init__(self, **kwargs):
        raise ImportError("no module named 'libfoo'")


@pytest.fixture(autouse=True)
def toys():
    entries = {TEST_ID: GuessEnv, BROKEN_ID: BrokenGraderEnv, FLAKY_ID: FlakyGraderEnv, FALLS_ID: FallsOverEnv,
               EXEC_ID: WithExecutorEnv, CANNOT_ID: CannotBuildEnv}
    for env_id, cls in entries.items():
        gym.register(env_id, entry_point=cls)
    yield
    for env_id in entries:
        del gym.registry[env_id]


def run(argv, stdin=""):
    out = io.StringIO()
    code = main(argv, out=out, inp=stdin if not isinstance(stdin, str) else io.StringIO(stdin))
    return code, out.getvalue()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- the run table
def test_an_unreachable_model_server_is_a_loud_failure_not_a_zero(tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code, out = run(["run", "--env", TEST_ID, "--agent", "openai", "--agent-arg", f"base_url={url}",
                     "--agent-arg", "model=m", "--agent-arg", "max_retries=0", "--episodes", "2",
                     "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    head, _, row = out.splitlines()[:3]
    assert "infra" in head and "agent" in head
    assert row.split()[:5] == ["execgym-test/GuessCLIErr-v0", "openai", "2", "0", "2"] and "(none scored)" in row
    failure = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(failure) == 1 and "every episode (2) failed on the agent: APIConnectionError" in failure[0]
    summary = json.loads((tmp_path / "summary.json").read_text())[0]
    assert summary["agent_errors"] == 2 and summary["infra_errors"] == 0 and summary["scored"] == 0
    assert summary["success_rate"] is None and "APIConnectionError" in next(iter(summary["error_causes"]))
    # the message about trajectories is true: both episodes are recorded, as ended by the agent
    assert "2 trajectories (2 ended by an agent error) in 1 file(s)" in out
    records = [json.loads(line) for p in tmp_path.glob("*.jsonl") for line in p.open()]
    assert len(records) == 2 and all("APIConnectionError" in r["agent_error"] for r in records)
    assert all(r["outcome"] is None for r in records)


def test_infra_errors_are_counted_apart_and_left_out_of_the_success_rate(tmp_path):
    code, out = run(["run", "--env", FLAKY_ID, "--agent", "oracle", "--episodes", "8", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())[0]
    records = [json.loads(line) for line in (tmp_path / "execgym-test_FlakyGrader-v0__oracle.jsonl").open()]
    broken = sum(r["task_id"] == "word-2" for r in records)
    assert 0 < broken < 8 and code == 0, "seeds 0..7 should draw both kinds of word"
    assert summary["infra_errors"] == broken and summary["agent_errors"] == 0
    assert summary["scored"] == 8 - broken and summary["success_rate"] == 1.0  # the oracle, on the rest
    assert f"{len(records)} trajectories in 1 file(s)" in out and len(records) == 8


def test_a_run_where_every_episode_failed_on_infra_exits_non_zero(capsys):
    code, out = run(["run", "--env", BROKEN_ID, "--agent", "oracle", "--episodes", "2"])
    assert code == 1
    assert "every episode (2) failed on infra: InfraError: the grading worker died" in capsys.readouterr().err


def test_summarise_and_table_count_errors_apart():
    ok = EpisodeResult("a", 0, 1, 1.0, 1.0, True, False, 0.1, {"format": 1.0})
    fail = EpisodeResult("a", 1, 2, 0.0, 0.0, True, False, 0.1, {"format": 1.0})
    infra = EpisodeResult("a", 2, 1, 0.0, 0.0, False, True, 0.1, {"format": 0.0}, infra_error="InfraError: x")
    agent = EpisodeResult("a", 3, 0, 0.0, 0.0, False, False, 0.1, agent_error="AgentTimeout: 5 s")
    s = summarise("execgym/Toy-v0", "mix", [ok, fail, infra, agent])
    assert (s.episodes, s.scored, s.infra_errors, s.agent_errors) == (4, 2, 1, 1)
    assert s.success_rate == 0.5 and s.mean_turns == 1.5 and s.component_means == {"format": 1.0}
    assert s.error_causes == {"InfraError: x": 1, "AgentTimeout: 5 s": 1} and not s.all_failed
    row = format_table([s]).splitlines()[2].split()
    assert row[:6] == ["Toy-v0", "mix", "4", "1", "1", "0.50"]


def test_finished_rows_survive_a_later_env_crash(tmp_path, capsys):
    code, out = run(["run", "--env", f"{TEST_ID},{FALLS_ID}", "--agent", "oracle", "--episodes", "2",
                     "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "FallsOver-v0 · oracle" in err and "the env fell over" in err
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert rows[0]["env_id"] == TEST_ID and rows[0]["success_rate"] == 1.0
    assert "GuessCLIErr-v0" in out


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--env", TEST_ID, "--agent", "nope"], "unknown agent 'nope'; known agents: oracle, random"),
    (["play", "--env", TEST_ID, "--agent", "nope"], "unknown agent 'nope'; known agents: oracle, random"),
    (["run", "--env", TEST_ID, "--wrapper", "Nope"], "unknown reward wrapper 'Nope'; known: .*GatedReward"),
    (["run", "--env", TEST_ID, "--env-arg", "colour=3"],
     "takes no keyword 'colour'; it accepts: dataset, .*max_turns"),
    (["run", "--env", TEST_ID, "--dataset", "nope"], "unknown dataset format 'nope'"),
    (["run", "--env", TEST_ID, "--split", "nope"], "no split 'nope'"),
    (["play", "--env", TEST_ID, "--task-id", "nope"], "unknown task_id 'nope'"),
    (["run", "--env", "NoSuchEnv"], "unknown env 'NoSuchEnv'; registered: "),
    (["bench", "--env", "NoSuchEnv"], "unknown env 'NoSuchEnv'; registered: "),
    (["run", "--env", CANNOT_ID], f"{CANNOT_ID} cannot be built: ImportError: no module named 'libfoo'"),
])
def test_bad_input_is_one_clear_line(argv, message):
    with pytest.raises(SystemExit, match=message) as exc:
        run(argv)
    assert "\n" not in str(exc.value.code)


@pytest.mark.parametrize("episodes", ["0", "-3", "many"])
def test_episodes_must_be_a_positive_number(episodes, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["run", "--env", TEST_ID, "--episodes", episodes])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "--episodes" in err


def test_an_ambiguous_short_env_name_lists_the_matches(monkeypatch):
    monkeypatch.setattr(execgym, "registered_envs", lambda **kw: [TEST_ID, FLAKY_ID, BROKEN_ID])
    with pytest.raises(SystemExit, match=f"ambiguous env 'Gr': it matches {FLAKY_ID}, {BROKEN_ID}"):
        resolve_env_id("Gr")
    assert resolve_env_id("flaky") == FLAKY_ID
    assert resolve_env_id("GuessCLIErr") == TEST_ID


def test_list_shows_an_env_that_cannot_be_built_and_the_others(monkeypatch):
    monkeypatch.setattr(execgym, "registered_envs", lambda **kw: [CANNOT_ID, TEST_ID])
    code, out = run(["list"])
    assert code == 0 and "cannot be built: ImportError: no module named 'libfoo'" in out and TEST_ID in out


def test_run_all_with_an_env_that_cannot_be_built_runs_the_others_and_exits_1(monkeypatch, capsys):
    monkeypatch.setattr(execgym, "registered_envs", lambda **kw: [CANNOT_ID, TEST_ID])
    code, out = run(["run", "--env", "all", "--agent", "oracle", "--episodes", "2"])
    assert code == 1 and "GuessCLIErr-v0" in out and " 1.00 [" in out
    assert f"error: {CANNOT_ID} cannot be built: ImportError" in capsys.readouterr().err


def test_backend_ray_without_ray_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where Ray is not installed
    with pytest.raises(SystemExit, match=r"--backend ray needs Ray: pip install 'execgym\[ray\]'"):
        run(["run", "--env", TEST_ID, "--backend", "ray"])


def test_replay_of_a_missing_file_or_a_folder(tmp_path):
    with pytest.raises(SystemExit, match="no such file: .*gone.jsonl"):
        run(["replay", str(tmp_path / "gone.jsonl")])
    (tmp_path / "a__b.jsonl").write_text("")
    with pytest.raises(SystemExit, match=r"is a folder, not a trajectory file \(it holds a__b.jsonl\)"):
        run(["replay", str(tmp_path)])


def test_sandbox_gc_without_the_docker_sdk_or_daemon(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "docker", None)
    assert run(["sandbox", "gc"])[0] == 1
    assert "the docker SDK is not installed" in capsys.readouterr().err
    monkeypatch.undo()
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # a daemon that is not there
    assert run(["sandbox", "gc"])[0] == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Docker daemon reachable" in err


def test_executor_is_accepted_by_every_env_and_ignored_where_no_code_runs():
    WithExecutorEnv.seen.clear()
    code, _ = run(["run", "--env", TEST_ID, "--agent", "oracle", "--episodes", "1", "--executor", "local"])
    assert code == 0  # GuessEnv runs no code and takes no executor: it is left out
    code, _ = run(["run", "--env", EXEC_ID, "--agent", "oracle", "--episodes", "1", "--executor", "docker"])
    assert code == 0 and WithExecutorEnv.seen and set(WithExecutorEnv.seen) == {"docker"}


def test_an_out_folder_is_never_shared_by_two_runs(tmp_path):
    assert run(["run", "--env", TEST_ID, "--agent", "oracle", "--episodes", "3", "--out", str(tmp_path)])[0] == 0
    with pytest.raises(SystemExit, match="is not empty .*--overwrite"):
        run(["run", "--env", TEST_ID, "--agent", "oracle", "--episodes", "2", "--out", str(tmp_path)])
    (tmp_path / "notes.txt").write_text("mine")
    code, out = run(["run", "--env", TEST_ID, "--agent", "random", "--episodes", "2", "--out", str(tmp_path),
                     "--overwrite"])
    assert code == 0 and "2 trajectories in 1 file(s)" in out
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["execgym-test_GuessCLIErr-v0__random.jsonl"]
    assert [r["agent"] for r in json.loads((tmp_path / "summary.json").read_text())] == ["random"]
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the run's own files go


# ---------------------------------------------------------------------------------------------- play
class InterruptAfter(io.StringIO):
    """Standard input that gives its lines, then a Ctrl-C (KeyboardInterrupt) where the next would be."""

    def readline(self, *args):  # type: ignore[override]
        line = super().readline(*args)
        if not line:
            raise KeyboardInterrupt
        return line


def test_ctrl_c_in_play_ends_the_episode_cleanly_and_says_where_it_stood():
    stdin = InterruptAfter('{"name": "hint", "arguments": {"position": 0}}\n')
    code, out = run(["play", "--env", TEST_ID, "--task-id", "word-0"], stdin)
    assert code == 0
    assert "(interrupted) episode not finished: no outcome; return so far 0 in 1 turn(s)" in out


def test_play_says_when_an_episode_was_truncated():
    code, out = run(["play", "--env", TEST_ID, "--task-id", "word-0", "--max-turns", "1"],
                    '{"name": "hint", "arguments": {"position": 0}}\n')
    assert code == 0 and "episode over (truncated: the turn limit was reached" in out


def test_a_bare_json_call_with_a_syntax_error_is_not_valid_json():
    broken = '{"name": "hint", "arguments": {"position": 0}\n'
    code, out = run(["play", "--env", TEST_ID, "--task-id", "word-0"], broken + ":quit\n")
    env = gym.make(TEST_ID)
    env.reset(options={"task_id": "word-0"})
    expected, *_ = env.step(f"<tool_call>{broken.strip()}</tool_call>")
    assert "not valid JSON" in expected and expected in out
    assert "(stopped) episode not finished" in out  # the reply was an error, not a final answer


def test_tool_parameter_types_nested_objects_included():
    schema = {"type": "object", "required": ["where"], "properties": {
        "where": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                  "required": ["city"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "unit": {"enum": ["C", "F"]}}}
    assert schema_type(schema) == "{where: {city: string, days?: integer}, tags?: array[string], unit?: 'C'|'F'}"
    code, out = run(["play", "--env", TEST_ID, "--seed", "0", "--agent", "oracle"])
    assert "hint(position: integer): " in out and "submit(word: string): " in out


def test_a_real_sigint_in_play_ends_the_episode_cleanly():
    import signal
    import subprocess

    from tests.signals import sigint_default

    proc = subprocess.Popen([sys.executable, "-m", "execgym.cli", "play", "--env", "sql", "--seed", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)
    try:
        proc.stdin.write('{"name": "list_tables", "arguments": {}}\n')
        proc.stdin.flush()
        seen = []
        for line in proc.stdout:  # wait (on output, not on a clock) until the first turn was played
            seen.append(line)
            if line.startswith("[turn 1"):
                break
        proc.send_signal(signal.SIGINT)  # the process now waits in readline for the next reply: Ctrl-C there
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "(interrupted) episode not finished: no outcome; return so far 0 in 1 turn(s)" in rest
