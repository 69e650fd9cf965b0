"""``execgym view`` in a real headless Chromium: a real run's report loads clean, filters, opens episodes."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import execgym  # noqa: F401  (registers the envs)
from execgym.core.trajectory import RecordTrajectory, read_trajectories
from execgym.view.cli import run as view

pytestmark = pytest.mark.timeout(600)


def _wait(driver: Any, predicate: Any, timeout: float = 60.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: predicate(d))


def _open(driver: Any, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    _wait(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")


def _errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _rows(driver: Any) -> list[Any]:
    return driver.find_elements("css selector", "#episode-list tbody tr")


def _select(driver: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _open_episode(driver: Any, index: int) -> Any:
    driver.find_element("css selector", f'#episode-list tr[data-index="{index}"]').click()
    _wait(driver, lambda d: d.find_elements("css selector", "#episode #transcript"))
    return driver.find_element("id", "episode")


def test_real_run_report_in_chromium(run_dir: Path, browser: Any, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    assert view([str(run_dir), "--out", str(report)]) == 0
    records = [(p.name, r) for p in sorted(run_dir.glob("*__*.jsonl")) for r in read_trajectories(p)]
    assert len(records) == 12
    _open(browser, report)
    assert _errors(browser) == []

    summary = browser.find_elements("css selector", "#summary-table tbody tr")
    assert len(summary) == 6
    assert browser.find_element("id", "count").text == "12 of 12 episodes"
    assert len(_rows(browser)) == 12
    # the run's PNGs are inlined, not linked
    imgs = browser.find_elements("css selector", ".plots img")
    assert len(imgs) == 3 and all(i.get_attribute("src").startswith("data:image/png;base64,") for i in imgs)

    _select(browser, "f-env", "ToolUse-v0")
    rows = _rows(browser)
    assert len(rows) == 4 and {r.find_elements("tag name", "td")[1].text for r in rows} == {"ToolUse-v0"}
    _select(browser, "f-result", "success")
    rows = _rows(browser)
    assert len(rows) == 2 and {r.find_elements("tag name", "td")[2].text for r in rows} == {"oracle"}
    _select(browser, "f-agent", "random")
    assert _rows(browser) == [] and browser.find_element("id", "count").text == "0 of 12 episodes"
    _select(browser, "f-agent", "")
    _select(browser, "f-hack", "any")
    assert _rows(browser) == []  # no episode of this run is hack-flagged
    _select(browser, "f-hack", "")

    # a ToolUse oracle episode: its tool calls with their arguments, as recorded
    index = next(i for i, (name, r) in enumerate(records) if "ToolUse" in name and "oracle" in name)
    expected = [c for s in records[index][1]["steps"] for c in s["tool_calls"]]
    pane = _open_episode(browser, index)
    names = [e.text for e in pane.find_elements("css selector", ".call .name")]
    assert names == [c["name"] for c in expected]
    first_arg = next(iter(expected[0]["arguments"].values()))
    assert str(first_arg) in pane.find_element("css selector", ".call table.args").text
    assert "Reward components per step" in pane.text and pane.find_elements("css selector", "svg.spark")
    assert pane.find_elements("css selector", "table.checklist tbody tr")  # the checklist, with evidence
    assert records[index][1]["checklist"][0]["evidence"][:40] in pane.text
    browser.execute_script("document.getElementById('episodes').scrollIntoView()")
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("EXECGYM_VIEW_SCREENSHOT"):  # the README's picture: EXECGYM_VIEW_SCREENSHOT=docs/view.png
        shutil.copyfile(shot, os.environ["EXECGYM_VIEW_SCREENSHOT"])

    # a SWE oracle episode: its patch drawn as a diff
    _select(browser, "f-env", "")
    _select(browser, "f-result", "")
    index = next(i for i, (name, r) in enumerate(records) if "SWERepair" in name and "oracle" in name)
    pane = _open_episode(browser, index)
    assert pane.find_elements("css selector", "pre.diff .add") and pane.find_elements("css selector", "pre.diff .del")
    assert pane.find_elements("css selector", "table.units tbody tr")

    assert _errors(browser) == []


def test_sql_results_render_as_tables(browser: Any, tmp_path: Path) -> None:
    """A recorded TextToSQL episode (trajectory files as PATH): execute_sql's rows come out as a table."""
    path = tmp_path / "sql.jsonl"
    env = RecordTrajectory(gym.make("execgym/TextToSQL-v0"), path)
    env.reset(seed=0)
    call = '<tool_call>{{"name": "{}", "arguments": {}}}</tool_call>'
    obs, *_ = env.step(call.format("list_tables", "{}"))
    table = obs.split("\n")[1].split()[0].strip("-•*:,")
    env.step(call.format("execute_sql", json.dumps({"query": f"SELECT * FROM {table} LIMIT 3"})))
    env.step(call.format("submit_sql", json.dumps({"query": "SELECT 1"})))
    env.close()
    record = next(read_trajectories(path))
    shown = record["steps"][1]["observation"]
    header = shown.split("\n")[0].split(" | ")
    assert len(header) > 1, shown

    report = tmp_path / "sql.html"
    assert view([str(path), "--out", str(report)]) == 0
    _open(browser, report)
    pane = _open_episode(browser, 0)
    tables = pane.find_elements("css selector", "table.sql")
    assert tables, pane.text
    assert [th.text for th in tables[0].find_elements("css selector", "th")] == header
    assert len(tables[0].find_elements("css selector", "tbody tr")) == 3
    assert _errors(browser) == []


HOSTILE = [
    '</script><script>window.__pwned = "script"</script>',
    '<img src=x onerror="window.__pwned = \'img\'">',
    '<svg onload="window.__pwned = \'svg\'"></svg>',
    "<!-- <script>window.__pwned = 'comment'</script>",
    "\u2028\u2029 ]]> {{ 7*7 }} {% raw %}",
]


def _hostile_record() -> dict[str, Any]:
    text = "\n".join(HOSTILE)
    return {
        "format": "execgym.trajectory/1", "env_id": "execgym/ToolUse-v0" + HOSTILE[0], "task_id": HOSTILE[1],
        "seed": 0, "reset_observation": text, "system_prompt": HOSTILE[2], "tools": [
            {"type": "function", "function": {"name": HOSTILE[0], "description": HOSTILE[1], "parameters": {}}}],
        "steps": [{"action": text, "observation": text + "\n" + "".join(f"line {n}\n" for n in range(40)),
                   "reward": 0.0, "terminated": True, "truncated": False,
                   "reward_components": {HOSTILE[1]: 1.0, "nan": float("nan"), "inf": float("inf")},
                   "reward_breakdown": {HOSTILE[2]: 0.5},
                   "tool_calls": [{"name": HOSTILE[0], "arguments": {HOSTILE[1]: text, "patch": text}}],
                   "step_time_s": 0.01}],
        "return": 0.0, "outcome": 0.0, "units": [{"id": HOSTILE[0], "passed": False, "evidence": text}],
        "checklist": [{"id": HOSTILE[3], "passed": True, "evidence": HOSTILE[1]}], "hack_flags": [HOSTILE[0]],
        "infra_error": HOSTILE[1], "inner_wrappers": [HOSTILE[2]], "turns": 1, "episode_time_s": 0.1,
    }


def test_hostile_transcript_cannot_inject_script(browser: Any, tmp_path: Path) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "execgym_ToolUse-v0__</script>.jsonl".replace("/", "_")).write_text(
        json.dumps(_hostile_record()) + "\n")
    report = tmp_path / "hostile.html"
    assert view([str(folder), "--out", str(report)]) == 0
    html = report.read_text()
    for payload in HOSTILE[:4]:
        assert payload not in html
    assert html.count("</script>") == 3  # the page's own three script elements, nothing else closes one
    _open(browser, report)
    pane = _open_episode(browser, 0)
    time.sleep(0.5)  # an injected onerror/onload would have fired by now
    assert browser.execute_script("return window.__pwned === undefined")
    assert HOSTILE[1] in pane.text and HOSTILE[0] in pane.text  # shown as text, literally
    assert not pane.find_elements("css selector", "img, iframe, object, script")
    assert not browser.find_elements("css selector", "#episode svg[onload], img[onerror]")
    # the long observation is collapsed, and opens on a click
    (long,) = pane.find_elements("css selector", "#transcript .turn.tool details")
    assert "line 39" not in long.text and "(46 lines, " in long.text
    long.find_element("tag name", "summary").click()
    assert "line 39" in long.text
    assert "NaN" in pane.text  # a non-finite component (records may hold one) is shown, not a JSON.parse error
    assert _errors(browser) == []


def test_ten_thousand_episodes_open_lazily(browser: Any, tmp_path: Path) -> None:
    """10,000 synthetic 6-step episodes: the page loads, lists them a page at a time and opens the last one.
    The size and load time are printed (measured, not asserted: the machine is shared)."""
    folder = tmp_path / "big"
    folder.mkdir()
    lines = []
    for i in range(10_000):
        steps = [{"action": f"<tool_call>{{\"name\": \"search\", \"arguments\": {{\"q\": \"item {i}-{t}\"}}}}"
                            "</tool_call>", "observation": f"result {i}-{t}: " + "lorem ipsum " * 20,
                  "reward": 0.0, "terminated": t == 5, "truncated": False,
                  "reward_components": {"format": 1.0, "calls": 1.0, "tool_name": (i + t) % 2},
                  "tool_calls": [{"name": "search", "arguments": {"q": f"item {i}-{t}"}, "error": False}],
                  "step_time_s": 0.001} for t in range(6)]
        lines.append(json.dumps({"env_id": f"execgym/Synthetic{i % 3}-v0", "task_id": f"task-{i}", "seed": i,
                                 "reset_observation": f"Find item {i}.", "steps": steps, "return": float(i % 2),
                                 "outcome": float(i % 2), "units": [], "checklist": [], "hack_flags":
                                 ["edited_test"] if i % 97 == 0 else [],
                                 "infra_error": "InfraError: sandbox died" if i % 50 == 0 else None, "turns": 6}))
    (folder / f"execgym_Synthetic-v0__agent{0}.jsonl").write_text("\n".join(lines) + "\n")
    report = tmp_path / "big.html"
    t0 = time.perf_counter()
    assert view([str(folder), "--out", str(report)]) == 0
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _open(browser, report)
    load_s = time.perf_counter() - t0
    print(f"\n10,000 episodes: report {report.stat().st_size / 1e6:.1f} MB, built in {build_s:.1f} s, "
          f"loaded in Chromium in {load_s:.2f} s")
    assert browser.find_element("id", "count").text == "10000 of 10000 episodes (showing 200)"
    assert len(_rows(browser)) == 200
    _select(browser, "f-result", "error")
    assert browser.find_element("id", "count").text == "200 of 10000 episodes"  # infra errors: i % 50 == 0
    assert all(r.find_elements("css selector", ".chip.warn") for r in _rows(browser))
    _select(browser, "f-result", "")
    _select(browser, "f-hack", "edited_test")
    assert len(_rows(browser)) == 104  # i % 97 == 0 for i < 10,000
    browser.find_element("id", "f-task").send_keys("task-9991")
    assert len(_rows(browser)) == 1
    t0 = time.perf_counter()
    pane = _open_episode(browser, 9991)
    print(f"episode 9991 opened in {time.perf_counter() - t0:.2f} s")
    assert "item 9991-5" in pane.text and len(pane.find_elements("css selector", ".call")) == 6
    assert _errors(browser) == []


def test_cad_episode_marks_lower_is_better_and_shows_its_render(browser: Any, tmp_path: Path) -> None:
    """A recorded CAD oracle episode: the error components carry ↓, units and checklist show their evidence, and
    the picture the recorder kept (part beside target) is shown inline; without one the page says so."""
    pytest.importorskip("cadquery")
    from execgym.agents import make_agent
    from execgym.rollout.episode import run_episode

    path = tmp_path / "execgym_CADModel-v0__oracle.jsonl"
    env = RecordTrajectory(gym.make("execgym/CADModel-v0"), path, renders=True)
    try:
        assert run_episode(env, make_agent("oracle", env), seed=0).outcome == 1.0
    finally:
        env.close()
    record = next(read_trajectories(path))
    report = tmp_path / "cad.html"
    assert view([str(path), "--out", str(report)]) == 0
    _open(browser, report)
    pane = _open_episode(browser, 0)
    labels = [e.text for e in pane.find_elements("css selector", ".comp-row > span:first-child")]
    assert "bbox_error ↓" in labels and "iou" in labels
    assert record["renders"] and record["renders"][0].startswith("data:image/png;base64,")
    images = pane.find_elements("css selector", "img[alt=render]")
    assert len(images) == 1 and browser.execute_script("return arguments[0].naturalWidth", images[0]) > 100
    assert "No render recorded" not in pane.text
    assert record["checklist"][0]["evidence"] in pane.text and record["units"][0]["id"] in pane.text
    assert _errors(browser) == []
    # the same episode recorded without pictures: the page says plainly there is none
    bare = tmp_path / "bare" / "execgym_CADModel-v0__oracle.jsonl"
    bare.parent.mkdir()
    bare.write_text(json.dumps({**record, "renders": []}) + "\n")
    assert view([str(bare), "--out", str(tmp_path / "bare.html")]) == 0
    _open(browser, tmp_path / "bare.html")
    assert "No render recorded" in _open_episode(browser, 0).text
