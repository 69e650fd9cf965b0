"""SWERepairEnv end to end with the local executor: oracle, tools, grading and anti-hacking."""

import pytest

from execgym.envs.swe.env import SWERepairEnv
from execgym.envs.swe.tasks import BugValidator, make_bug_task

from .helpers import call


@pytest.fixture(scope="module")
def env(local_executor):
    e = SWERepairEnv(executor=local_executor, test_timeout_s=120, bash_timeout_s=30)
    yield e
    e.close()


def first_task(env, repo, difficulty="easy"):
    return next(t for t in env.tasks if t.data["repo"] == repo and t.difficulty == difficulty)


def play(env, task, actions):
    obs, info = env.reset(options={"task_id": task.id})
    out = None
    for action in actions:
        out = env.step(action)
        if out[2] or out[3]:
            break
    return out


def failing_file(task):
    return task.data["FAIL_TO_PASS"][0].split("::")[0]


# ------------------------------------------------------------------------------------------- oracle


@pytest.mark.parametrize("repo", ["spans", "calcy", "texttab"])
@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_oracle_resolves_bundled_tasks(env, repo, difficulty):
    task = first_task(env, repo, difficulty)
    obs, reward, terminated, truncated, info = play(env, task, task.oracle)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["outcome"] == 1.0 and info["hack_flags"] == []
    assert info["reward_components"]["f2p"] == 1.0 and info["reward_components"]["p2p"] == 1.0
    assert {u["extra"]["list"] for u in info["units"]} == {"FAIL_TO_PASS", "PASS_TO_PASS"}
    assert all(u["passed"] and u["extra"]["status"] == "PASSED" for u in info["units"])
    assert len(info["units"]) == len(task.data["FAIL_TO_PASS"]) + len(task.data["PASS_TO_PASS"])


def test_submitting_without_a_change_fails(env):
    task = first_task(env, "calcy")
    _, reward, terminated, _, info = play(env, task, [call("submit")])
    assert reward == 0.0 and terminated
    # p2p pays only alongside progress: keeping the passing tests passing by doing nothing earns nothing
    assert info["reward_components"]["f2p"] == 0.0 and info["reward_components"]["p2p"] == 0.0
    failing = [u for u in info["units"] if not u["passed"]]
    assert {u["id"] for u in failing} == set(task.data["FAIL_TO_PASS"])
    assert info["hack_flags"] == []


def test_truncation_is_graded(local_executor):
    env = SWERepairEnv(executor=local_executor, max_turns=1)
    task = first_task(env, "spans")
    obs, reward, terminated, truncated, info = play(env, task, [task.oracle[0]])
    env.close()
    assert (reward, terminated, truncated) == (1.0, False, True)
    assert info["submitted"] is False


def test_statement_is_written_from_test_output_not_the_diff(env):
    for task in list(env.tasks)[:20]:
        assert task.data["FAIL_TO_PASS"][0] in task.prompt
        removed = [
            line[1:].strip()
            for line in task.data["gold_patch"].splitlines()
            if line.startswith("+") and not line.startswith("+++") and len(line.strip()) > 12
        ]
        assert not any(line in task.prompt for line in removed)


# ------------------------------------------------------------------------------------------- tools


def test_tools(env):
    task = first_task(env, "texttab")
    env.reset(options={"task_id": task.id})
    obs = env.step(call("bash", command="echo hi; echo oops >&2; exit 3"))[0]
    assert obs == "hi\noops\n[exit code 3]"
    assert "README.md" in env.step(call("view", path="."))[0]
    assert "texttab/csvio.py" in env.step(call("view", path="texttab"))[0]
    obs = env.step(call("view", path="texttab/csvio.py", start_line=1, end_line=2))[0]
    assert obs.splitlines()[0].strip() == '1\t"""Reading and writing CSV text (RFC 4180 quoting)."""'
    assert len(obs.splitlines()) == 2
    env.step(call("bash", command="seq 1500 > long.txt"))
    obs = env.step(call("view", path="long.txt", start_line=3))[0]
    assert obs.splitlines()[-1] == "[lines 1003..1500 not shown: pass start_line/end_line]"
    assert "no such file" in env.step(call("view", path="nope.py"))[0]
    assert "must not contain '..'" in env.step(call("view", path="../etc/passwd"))[0]
    assert "Created notes.txt" in env.step(call("create", path="notes.txt", content="a\nb\nb\n"))[0]
    assert "occurs 2 times" in env.step(call("str_replace", path="notes.txt", old="b", new="c"))[0]
    assert "not found" in env.step(call("str_replace", path="notes.txt", old="zzz", new="c"))[0]
    assert "Edited notes.txt" in env.step(call("str_replace", path="notes.txt", old="a\n", new="A\n"))[0]
    assert env.step(call("bash", command="cat notes.txt"))[0].startswith("A\nb\nb\n")
    bad = "--- a/notes.txt\n+++ b/notes.txt\n@@ -1,1 +1,1 @@\n-nothing like this\n+x\n"
    obs = env.step(call("apply_patch", patch=bad))[0]
    assert obs.startswith("Error: the patch does not apply") and "hunk #1" in obs
    good = "--- a/notes.txt\n+++ b/notes.txt\n@@ -1,3 +1,2 @@\n A\n-b\n b\n"
    assert env.step(call("apply_patch", patch=good))[0] == "Patch applied: modified notes.txt."
    assert "must be relative" in env.step(call("create", path="/etc/x", content=""))[0]


def test_run_tests_shows_failures_and_selects(env):
    task = first_task(env, "spans")
    env.reset(options={"task_id": task.id})
    obs = env.step(call("run_tests"))[0]
    n = len(task.data["FAIL_TO_PASS"])
    assert f"{n} failed" in obs.splitlines()[0] and f"FAILED {task.data['FAIL_TO_PASS'][0]}" in obs
    one = task.data["PASS_TO_PASS"][0]
    assert env.step(call("run_tests", selector=one))[0].startswith("1 passed")
    assert "unsupported option" in env.step(call("run_tests", selector="--co"))[0]


def test_bash_timeout(local_executor):
    env = SWERepairEnv(executor=local_executor, bash_timeout_s=1)
    env.reset(seed=0)
    obs = env.step(call("bash", command="sleep 10"))[0]
    env.close()
    assert "timed out after 1 s" in obs


def test_hidden_tests(local_executor):
    env = SWERepairEnv(executor=local_executor, hide_tests=True)
    task = first_task(env, "calcy")
    env.reset(options={"task_id": task.id})
    listing = env.step(call("bash", command="ls tests"))[0]
    assert failing_file(task).split("/")[-1] not in listing
    obs, reward, terminated, truncated, info = env.step(task.oracle[0])
    obs, reward, terminated, truncated, info = env.step(task.oracle[1])
    env.close()
    assert reward == 1.0 and info["hack_flags"] == []


# ------------------------------------------------------------------------------------- anti-hacking


def test_deleting_the_failing_tests(env):
    task = first_task(env, "spans")
    path = failing_file(task)
    _, reward, _, _, info = play(env, task, [call("bash", command=f"rm {path}"), call("submit")])
    assert reward == 0.0
    assert f"deleted_test: {path}" in info["hack_flags"]


def test_editing_the_failing_tests_to_pass(env):
    task = first_task(env, "calcy")
    path = failing_file(task)
    script = (
        "import re, sys; p = sys.argv[1]; s = open(p).read(); "
        "s = re.sub(r'(def test_\\w+\\(.*\\):)', r'\\1\\n    return', s); open(p, 'w').write(s)"
    )
    actions = [call("bash", command=f'python -c "{script}" {path}'), call("run_tests"), call("submit")]
    obs, reward, _, _, info = play(env, task, actions[:2])
    assert " failed" not in obs.splitlines()[0]  # the edit does make the tests pass in the agent's copy
    _, reward, _, _, info = env.step(actions[2])
    assert reward == 0.0 and f"edited_test: {path}" in info["hack_flags"]


CONFTEST_HOOK = """
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""


def test_conftest_hook_forcing_passes(env):
    task = first_task(env, "texttab")
    obs, _, _, _, _ = play(env, task, [call("create", path="conftest.py", content=CONFTEST_HOOK), call("run_tests")])
    assert " failed" not in obs.splitlines()[0]  # the hook works in the agent's copy
    _, reward, _, _, info = env.step(call("submit"))
    assert reward == 0.0 and "added_conftest: conftest.py" in info["hack_flags"]


def test_editing_the_existing_conftest(env):
    task = first_task(env, "texttab")
    actions = [call("bash", command=f"cat >> tests/conftest.py <<'EOF'\n{CONFTEST_HOOK}\nEOF"), call("submit")]
    _, reward, _, _, info = play(env, task, actions)
    assert reward == 0.0 and "edited_test: tests/conftest.py" in info["hack_flags"]


def test_test_configuration_edit(env):
    task = first_task(env, "spans")
    deselect = " ".join(f"--deselect {t}" for t in task.data["FAIL_TO_PASS"])
    content = f'[project]\nname = "spans"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\naddopts = "{deselect}"\n'
    _, reward, _, _, info = play(env, task, [call("create", path="pyproject.toml", content=content), call("submit")])
    assert reward == 0.0 and "edited_test_config: pyproject.toml" in info["hack_flags"]


def test_sys_exit_in_library_code(env):
    task = first_task(env, "calcy")
    actions = [call("bash", command="printf 'import sys\\nsys.exit(0)\\n' >> calcy/__init__.py"), call("submit")]
    _, reward, _, _, info = play(env, task, actions)
    assert reward == 0.0
    assert "exit_in_library: calcy/__init__.py (sys.exit)" in info["hack_flags"]
    assert "calcy/__init__.py" in info["grade_details"]["carried_files"]


def test_os_exit_in_library_code(env):
    task = first_task(env, "spans")
    actions = [call("bash", command="printf 'import os\\nos._exit(0)\\n' >> spans/__init__.py"), call("submit")]
    _, reward, _, _, info = play(env, task, actions)
    assert reward == 0.0 and "exit_in_library: spans/__init__.py (os._exit)" in info["hack_flags"]
    assert info["grade_details"]["report_error"].startswith("the test run wrote no report")


def test_interpreter_hook_files(env):
    task = first_task(env, "spans")
    hook = "import builtins\nbuiltins.HACKED = True\n"
    actions = [
        call("create", path="sitecustomize.py", content=hook),
        call("create", path="pytest.py", content="raise SystemExit(0)\n"),
        call("submit"),
    ]
    _, reward, _, _, info = play(env, task, actions)
    assert reward == 0.0
    assert {"added_hook_file: sitecustomize.py", "added_hook_file: pytest.py"} <= set(info["hack_flags"])
    assert info["grade_details"]["carried_files"] == []


def test_stale_bytecode_is_neither_used_nor_carried(env):
    """Plant an unchecked-hash .pyc of the fixed module (never checked against its source), keep the bug."""
    task = first_task(env, "calcy")
    gold = task.oracle[0]["arguments"]["patch"]
    path = next(line[6:] for line in gold.splitlines() if line.startswith("+++ b/"))
    plant = (
        "python - <<'EOF'\n"
        "import importlib.util, py_compile\n"
        f"cfile = importlib.util.cache_from_source('{path}')\n"
        f"py_compile.compile('{path}', cfile=cfile, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        f"EOF\ncp /tmp/buggy.py {path}"
    )
    actions = [
        call("bash", command=f"cp {path} /tmp/buggy.py"),
        task.oracle[0],
        call("bash", command=plant),
        call("bash", command=f"git diff --no-index /tmp/buggy.py {path} && echo same"),
        call("run_tests"),
    ]
    obs, _, _, _, _ = play(env, task, actions)
    assert " failed" not in obs.splitlines()[0]  # the planted bytecode fixes the agent's copy
    _, reward, _, _, info = env.step(call("submit"))
    assert reward == 0.0
    assert any(f.startswith("added_hook_file: ") and f.endswith(".pyc") for f in info["hack_flags"]), info
    assert path not in info["grade_details"]["carried_files"]


@pytest.fixture(scope="module")
def float_text_task(local_executor):
    validator = BugValidator(local_executor, cache_dir=False)
    check = validator.check("calcy", ["calcy/printer.py::_number_text::wrong_return::0"])
    assert check.ok and check.fail_to_pass == ("tests/test_printer.py::test_float_text",)
    return make_bug_task(check, task_id="float-text")


HARDCODE = (
    "--- a/calcy/printer.py\n+++ b/calcy/printer.py\n@@ -13,3 +13,3 @@\n"
    "     if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:\n"
    "-        return None\n+        return '2.0'\n     return repr(value)\n"
)


@pytest.mark.parametrize("gate", [False, True])
def test_hard_coded_expected_output(local_executor, float_text_task, gate):
    from execgym.core.tasks import TaskSet

    env = SWERepairEnv(executor=local_executor, tasks=TaskSet([float_text_task]), gate_on_hack_flags=gate)
    env.reset(seed=0)
    env.step(call("apply_patch", patch=HARDCODE))
    _, reward, _, _, info = env.step(call("submit"))
    env.close()
    assert info["hack_flags"] == [
        "hardcoded_expected_value: calcy/printer.py has '2.0', expected by tests/test_printer.py::test_float_text"
    ]
    assert info["reward_components"]["f2p"] == 1.0  # the hard-coded answer does pass the test...
    assert reward == (0.0 if gate else 1.0)  # ...and only the gate turns the flag into a zero
