import pytest

from execgym.envs.swe.grading import (
    JUnitReport,
    classify_path,
    diff_flags,
    expected_literals,
    grade_tests,
    hardcoded_value_flags,
    junit_key,
    parse_junit,
    source_flags,
)
from execgym.envs.swe.runner import TestCommand, run_pytest
from execgym.executor import SandboxSpec

TESTS = """
import pytest


def test_pass():
    assert True


def test_fail():
    assert 1 == 2


@pytest.mark.parametrize("x,y", [(1, 1), (0.5, "a.b"), (2, 3)])
def test_param(x, y):
    assert x == y


class TestGroup:
    def test_in_class(self):
        pass

    class TestNested:
        def test_deep(self):
            pass


@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False


@pytest.mark.skip(reason="later")
def test_skip():
    pass


@pytest.fixture
def broken():
    raise RuntimeError("fixture failed")


def test_error(broken):
    pass
"""

IDS = {
    "tests/test_mix.py::test_pass": "PASSED",
    "tests/test_mix.py::test_fail": "FAILED",
    "tests/test_mix.py::test_param[1-1]": "PASSED",
    "tests/test_mix.py::test_param[0.5-a.b]": "FAILED",
    "tests/test_mix.py::test_param[2-3]": "FAILED",
    "tests/test_mix.py::TestGroup::test_in_class": "PASSED",
    "tests/test_mix.py::TestGroup::TestNested::test_deep": "PASSED",
    "tests/test_mix.py::test_xfail": "XFAIL",
    "tests/test_mix.py::test_skip": "SKIPPED",
    "tests/test_mix.py::test_error": "ERROR",
}


@pytest.fixture(scope="module")
def mixed_report(local_executor):
    spec = SandboxSpec(files={"tests/test_mix.py": TESTS})
    with local_executor.sandbox(spec) as sb:
        run = run_pytest(sb, TestCommand(), ["tests"], timeout=120)
        leftovers = sb.run(["sh", "-c", "ls -a"]).stdout
    assert ".execgym-junit" not in leftovers  # the report is read back and deleted
    return run.report


def test_statuses_by_node_id(mixed_report):
    assert {t: mixed_report.status(t) for t in IDS} == IDS


def test_node_ids_from_report(mixed_report):
    assert sorted(mixed_report.nodeids()) == sorted(IDS)


def test_missing_test(mixed_report):
    assert mixed_report.status("tests/test_mix.py::test_nope") == "MISSING"


def test_swe_bench_rules(mixed_report):
    f2p = ["tests/test_mix.py::test_pass", "tests/test_mix.py::test_xfail", "tests/test_mix.py::test_skip"]
    p2p = ["tests/test_mix.py::test_skip", "tests/test_mix.py::TestGroup::test_in_class"]
    result = grade_tests(f2p, p2p, mixed_report)
    assert [t.passed for t in result.tests] == [True, True, False, True, True]
    assert result.f2p == pytest.approx(2 / 3) and result.p2p == 1.0 and not result.resolved
    assert grade_tests(f2p[:2], p2p, mixed_report).resolved


def test_missing_and_error_fail(mixed_report):
    result = grade_tests(["tests/test_mix.py::gone"], ["tests/test_mix.py::test_error"], mixed_report)
    assert [(t.status, t.passed) for t in result.tests] == [("MISSING", False), ("ERROR", False)]


def test_empty_lists_are_resolved():
    result = grade_tests([], [], JUnitReport())
    assert result.resolved and result.f2p == 1.0 and result.p2p == 1.0


def test_units_shape(mixed_report):
    unit = grade_tests(["tests/test_mix.py::test_pass"], [], mixed_report).tests[0].as_unit().as_info()
    assert unit == {
        "id": "tests/test_mix.py::test_pass",
        "passed": True,
        "evidence": "PASSED",
        "extra": {"status": "PASSED", "list": "FAIL_TO_PASS"},
    }


def test_junit_key():
    assert junit_key("a/b/test_c.py::T::test[x::y.z]") == ("a.b.test_c.T", "test[x::y.z]")


def test_parse_junit_rejects_garbage():
    with pytest.raises(ValueError):
        parse_junit("<html>")
    with pytest.raises(ValueError):
        parse_junit("<testsuites")


def test_worst_status_wins_for_duplicates():
    xml = (
        '<testsuite><testcase classname="t" name="a"/><testcase classname="t" name="a">'
        '<error message="teardown"/></testcase></testsuite>'
    )
    assert parse_junit(xml).status("t.py::a") == "ERROR"


@pytest.mark.parametrize(
    "path,kind",
    [
        ("pkg/core.py", "source"),
        ("tests/test_core.py", "test"),
        ("pkg/tests/helpers.py", "test"),
        ("test_top.py", "test"),
        ("pkg/core_test.py", "test"),
        ("tests/conftest.py", "hook"),
        ("conftest.py", "hook"),
        ("pyproject.toml", "config"),
        ("pkg/pytest.ini", "config"),
        ("sitecustomize.py", "hook"),
        ("pkg/evil.pth", "hook"),
        ("pytest.py", "hook"),
        ("_pytest/hooks.py", "hook"),
        ("x.dist-info/entry_points.txt", "hook"),
        ("pkg/native.so", "hook"),
    ],
)
def test_classify_path(path, kind):
    assert classify_path(path) == kind


def test_classify_protected_path():
    assert classify_path("data/expected.json", protected=["data/expected.json"]) == "test"


def test_diff_flags():
    before = {
        "tests/test_a.py": "a",
        "tests/test_b.py": "b",
        "tests/conftest.py": "x",
        "pyproject.toml": '[project]\nname = "p"\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
        "setup.cfg": "[metadata]\nname = p\n",
    }
    after = {
        "tests/test_a.py": None,
        "tests/test_b.py": "changed",
        "tests/conftest.py": "y",
        "pkg/conftest.py": "new",
        "pyproject.toml": '[project]\nname = "p"\n[tool.pytest.ini_options]\naddopts = "-k nothing"\n',
        "setup.cfg": "[metadata]\nname = q\n",
        "tests/test_new.py": "def test(): pass",
        "sitecustomize.py": "import os",
    }
    assert diff_flags(before, after) == [
        "added_conftest: pkg/conftest.py",
        "edited_test_config: pyproject.toml",
        "added_hook_file: sitecustomize.py",
        "edited_test: tests/conftest.py",
        "deleted_test: tests/test_a.py",
        "edited_test: tests/test_b.py",
    ]


def test_config_edit_outside_the_pytest_section_is_not_flagged():
    before = {"pyproject.toml": '[project]\nversion = "1"\n'}
    after = {"pyproject.toml": '[project]\nversion = "2"\n'}
    assert diff_flags(before, after) == []


def test_added_pytest_ini_is_flagged():
    assert diff_flags({}, {"pytest.ini": "[pytest]\naddopts = -p no:python\n"}) == ["edited_test_config: pytest.ini"]


@pytest.mark.parametrize(
    "added,flag",
    [
        ("import sys\nsys.exit(0)\n", "exit_in_library: m.py (sys.exit)"),
        ("import os\nos._exit(0)\n", "exit_in_library: m.py (os._exit)"),
        ("raise SystemExit(0)\n", "exit_in_library: m.py (raise SystemExit)"),
        ("import pytest\npytest.skip('x')\n", "skip_in_library: m.py (pytest.skip)"),
        (
            "import os\nX = os.environ.get('PYTEST_CURRENT_TEST')\n",
            "test_framework_in_library: m.py ('PYTEST_CURRENT_TEST')",
        ),
    ],
)
def test_source_flags(added, flag):
    assert flag in source_flags("m.py", "x = 1\n", "x = 1\n" + added)


def test_source_flags_count_only_new_calls():
    text = "import sys\n\ndef main():\n    sys.exit(0)\n"
    assert source_flags("m.py", text, text + "\n\ndef other():\n    return 1\n") == []


def test_hardcoded_value_heuristic():
    tests = {
        "tests/test_m.py": (
            "import pytest\n\n@pytest.mark.parametrize('text,value', [('2 + 2', 4), ('7 * 6', 42)])\n"
            "def test_eval(text, value):\n    assert ev(text) == value\n\n"
            "def test_name():\n    assert name() == 'counter-total'\n"
        )
    }
    expected = expected_literals(tests, ["tests/test_m.py::test_eval[7 * 6-42]", "tests/test_m.py::test_name"])
    before = "def ev(text):\n    return eval(text)\n\ndef name():\n    return 'x'\n"
    cheat = (
        "def ev(text):\n    if text == '7 * 6':\n        return 42\n    return eval(text)\n\n"
        "def name():\n    return 'x'\n"
    )
    flags = hardcoded_value_flags("m.py", before, cheat, expected)
    assert flags == [
        "hardcoded_expected_value: m.py has 42, expected by tests/test_m.py::test_eval[7 * 6-42]",
        "hardcoded_expected_value: m.py has '7 * 6', expected by tests/test_m.py::test_eval[7 * 6-42]",
    ]
    # the reference fix adding the same literal is not flagged
    assert hardcoded_value_flags("m.py", before, cheat, expected, ["    return 42\n", "'7 * 6'\n"]) == []
    # moving existing code around adds nothing
    assert hardcoded_value_flags("m.py", cheat, cheat + "\n", expected) == []


def test_small_literals_are_not_flagged():
    expected = expected_literals({"t.py": "def test_a():\n    assert f() == 1\n"}, ["t.py::test_a"])
    assert hardcoded_value_flags("m.py", "def f():\n    return 0\n", "def f():\n    return 1\n", expected) == []


def test_inherited_tests_get_the_node_id_of_the_module_they_run_in() -> None:
    # xunit1 names the file a test was written in: a mixin's method inherited by classes of other modules
    # (cachetools' suite) must still get one node id per class, each of which reads its status back.
    from execgym.envs.swe.grading import parse_junit

    xml = """<testsuites><testsuite>
    <testcase classname="tests.test_lru.LRUCacheTest" name="test_lru" file="tests/test_lru.py"/>
    <testcase classname="tests.test_lru.LRUCacheTest" name="test_defaults" file="tests/__init__.py"/>
    <testcase classname="tests.test_rr.RRCacheTest" name="test_defaults" file="tests/__init__.py"><failure/></testcase>
    <testcase classname="pkg.tests.test_x.TestA" name="test_b" file="pkg/tests/base.py"/>
    </testsuite></testsuites>"""
    report = parse_junit(xml)
    assert report.nodeids() == [
        "tests/test_lru.py::LRUCacheTest::test_lru",
        "tests/test_lru.py::LRUCacheTest::test_defaults",
        "tests/test_rr.py::RRCacheTest::test_defaults",
        "pkg/tests/test_x.py::TestA::test_b",
    ]
    assert [report.status(t) for t in report.nodeids()] == ["PASSED", "PASSED", "FAILED", "PASSED"]


def test_renamed_copies_keep_the_order_of_a_class_s_tests() -> None:
    # unittest runs a class's tests in name order; pathspec's suite sets state in one test that the next reads.
    import re

    from execgym.envs.swe.grading import twin_source

    names = ["test_02_link_1_check", "test_01_files", "test_02_link_2", "test_10_last", "test_03_x"]
    source = "import unittest\n\nclass T(unittest.TestCase):\n" + "".join(
        f"    def {n}(self):\n        pass\n" for n in names
    )
    for seed in range(20):
        made = twin_source("tests/test_a.py", source, [f"tests/test_a.py::T::{n}" for n in names], seed=seed)
        assert made is not None
        copies = [made.renamed[f"tests/test_a.py::T::{n}"].rsplit("::", 1)[1] for n in sorted(names)]
        assert copies == sorted(copies) and len(set(copies)) == len(names)
        assert re.findall(r"def (test_\w+)", made.copy_text) == [
            made.renamed[f"tests/test_a.py::T::{n}"].rsplit("::", 1)[1] for n in names
        ]
