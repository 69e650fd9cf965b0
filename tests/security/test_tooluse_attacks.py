"""Cheap strategies against every ToolUse task family: each must earn outcome 0 (and no component for idling).

An attacker here knows what the grader wants (it reads the task's gold answers), which is more than a policy
could know. What it may not do is the work: the lookups the answers depend on, the writes the user asked for
with the content the user asked for. Every family of the bundled set and of the generator is attacked.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from execgym.agents.random_agent import RandomAgent
from execgym.core.tasks import TaskSet
from execgym.envs.tooluse.env import ToolUseEnv
from execgym.envs.tooluse.grading import FREE_TEXT_ARGS
from execgym.envs.tooluse.tasks import ERRORS, TEMPLATES, TITLES, WRITE_TOOLS, generate_task

Strategy = Callable[[Any, int], Iterator[Any]]

# A successful call that looks nothing up (the search_products("zzzz")), per domain.
IRRELEVANT = {
    "shop": {"name": "search_products", "arguments": {"query": "zzzz"}},
    "office": {"name": "search_contacts", "arguments": {"name": "zzzz"}},
    "files": {"name": "find_files", "arguments": {"pattern": "*.zzzz"}},
}
# Everything a family's answers could plausibly be: statuses, every title, room, error message, small numbers.
VOCABULARY = " ".join(["shipped delivered pending cancelled.", ", ".join(TITLES), ", ".join(ERRORS),
                       " ".join(str(n) for n in range(13))])


def _gold_replies(task: Any) -> list[str]:
    return [a for a in task.oracle if isinstance(a, str)]


def do_nothing(task: Any, turn: int) -> Iterator[Any]:
    yield "Done."


def claim_the_gold_answer(task: Any, turn: int) -> Iterator[Any]:
    """The exact gold answer, every required output included, with no call behind it."""
    yield _gold_replies(task)[turn]


def irrelevant_call_then_gold_answer(task: Any, turn: int) -> Iterator[Any]:
    """Issue 15.11: one successful irrelevant call makes 'used tools' true for the old rule."""
    yield IRRELEVANT[task.data["domain"]]
    yield _gold_replies(task)[turn]


def irrelevant_call_then_kitchen_sink(task: Any, turn: int) -> Iterator[Any]:
    """A blanket answer that names every plausible value (and the gold one)."""
    yield IRRELEVANT[task.data["domain"]]
    yield f"{_gold_replies(task)[turn]} {VOCABULARY}"


def blanket_refusal(task: Any, turn: int) -> Iterator[Any]:
    yield IRRELEVANT[task.data["domain"]]
    yield "I'm sorry, that is already shipped or delivered, so it can no longer be changed."


def reads_only_then_claim(task: Any, turn: int) -> Iterator[Any]:
    """The lookups, none of the writes the user asked for, and the gold answer."""
    for step in task.data["turns"][turn]["gold"]:
        reads = [c for c in step if c["name"] not in WRITE_TOOLS]
        if reads:
            yield reads
    yield _gold_replies(task)[turn]


def lookups_then_every_plausible_value(task: Any, turn: int) -> Iterator[Any]:
    """The real lookups, then an answer that hedges over every value the family could have."""
    for step in task.data["turns"][turn]["gold"]:
        reads = [c for c in step if c["name"] not in WRITE_TOOLS]
        if reads:
            yield reads
    yield f"It is one of these: {VOCABULARY}"


def writes_without_content(task: Any, turn: int) -> Iterator[Any]:
    """Every gold call, but the free text of the writes (an e-mail's body, a file's content) says nothing."""
    for step in task.data["turns"][turn]["gold"]:
        calls = copy.deepcopy(step)
        for call in calls:
            if call["name"] in WRITE_TOOLS:
                for key in list(call["arguments"]):
                    if key in FREE_TEXT_ARGS - {"reason"} and isinstance(call["arguments"][key], str):
                        call["arguments"][key] = "As discussed."
        yield calls
    yield _gold_replies(task)[turn]


STRATEGIES: dict[str, Strategy] = {
    "do_nothing": do_nothing,
    "claim_the_gold_answer": claim_the_gold_answer,
    "irrelevant_call_then_gold_answer": irrelevant_call_then_gold_answer,
    "irrelevant_call_then_kitchen_sink": irrelevant_call_then_kitchen_sink,
    "blanket_refusal": blanket_refusal,
    "reads_only_then_claim": reads_only_then_claim,
}
# Families where a hedge over every plausible value after the real lookups still wins: none. Each answer's
# competing values (the other status, the other project's port, the other e-mails' facts, the other counts)
# are not_said criteria derived from the world (Scenario.distractors), so "already shipped or delivered"
# no longer wins shop-cancel-shipped.
HEDGE_WINS: tuple[str, ...] = ()
# Families whose writes carry free text the user dictated (the rest are attacked by the strategies above).
FREE_TEXT_FAMILIES = ("mail-forward", "office-reschedule", "fs-note", "fs-todo")


def _family(task: Any) -> str:
    return task.data["template"]


def _tasks() -> list[Any]:
    env = ToolUseEnv()
    bundled = list(env.tasks)
    generated = [generate_task(seed, level) for level in ("easy", "medium", "hard") for seed in range(8)]
    return bundled + generated


@pytest.fixture(scope="module")
def all_tasks() -> list[Any]:
    tasks = _tasks()
    assert {_family(t) for t in tasks} == {t.id for t in TEMPLATES}
    return tasks


def play(env: ToolUseEnv, task: Any, strategy: Strategy) -> dict[str, Any]:
    env.reset(options={"task_id": task.id})
    info: dict[str, Any] = {}
    for turn in range(len(task.data["turns"])):
        for action in strategy(task, turn):
            *_, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                return info
    return info


def _env_for(tasks: list[Any]) -> ToolUseEnv:
    return ToolUseEnv(tasks=TaskSet(tasks), max_turns=60)


def _writes(task: Any) -> bool:
    return any(c["name"] in WRITE_TOOLS for turn in task.data["turns"] for step in turn["gold"] for c in step)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_cheap_strategy_earns_nothing_on_any_family(all_tasks, name):
    # Without writes, the reads and the gold answer are the gold solution: that strategy attacks the rest.
    chosen = [t for t in all_tasks if name != "reads_only_then_claim" or _writes(t)]
    env = _env_for(chosen)
    won = [task.id for task in chosen if play(env, task, STRATEGIES[name])["outcome"] != 0.0]
    assert won == [], f"{name} won {len(won)} task(s): {won[:8]}"


def test_an_answer_listing_every_plausible_value_after_the_lookups_earns_nothing(all_tasks):
    chosen = [t for t in all_tasks if _family(t) not in HEDGE_WINS]
    env = _env_for(chosen)
    won = [task.id for task in chosen if play(env, task, lookups_then_every_plausible_value)["outcome"] != 0.0]
    assert won == [], won


def test_writes_without_the_dictated_content_earn_nothing(all_tasks):
    """Issue 15.11: an e-mail whose body omits what the user asked to send scored 1 on every mail-forward task."""
    chosen = [t for t in all_tasks if _family(t) in FREE_TEXT_FAMILIES]
    assert {_family(t) for t in chosen} == set(FREE_TEXT_FAMILIES)
    env = _env_for(chosen)
    won = [task.id for task in chosen if play(env, task, writes_without_content)["outcome"] != 0.0]
    assert won == []


def test_the_oracle_still_wins_everything_the_attacks_are_run_on(all_tasks):
    env = _env_for(all_tasks)
    for task in all_tasks:
        env.reset(options={"task_id": task.id})
        for action in task.oracle:
            *_, info = env.step(action)
        assert info["outcome"] == 1.0, (task.id, [u for u in info["units"] if not u["passed"]])


def test_doing_nothing_earns_no_component(all_tasks):
    """Issue 15.13: idling earned the state match on read-only tasks and the guards of every checklist."""
    env = _env_for(all_tasks)
    for task in all_tasks:
        info = play(env, task, do_nothing)
        parts = info["reward_components"]
        assert parts["state_match"] == parts["outputs_found"] == parts["checklist"] == 0.0, (task.id, parts)
        assert parts["efficiency"] == 0.0 and parts["tool_name"] == 0.0, (task.id, parts)
        assert not any(item["passed"] for item in info["checklist"]), task.id


def test_right_names_with_garbage_arguments_do_not_earn_the_answer_step():
    """A text answer is scored against the gold steps not really made, not against the ones name-matched."""
    env = ToolUseEnv()
    for task in (t for t in env.tasks if t.id.endswith("-00")):
        env.reset(options={"task_id": task.id})
        for step in task.data["turns"][0]["gold"]:
            env.step([{"name": c["name"], "arguments": {k: "zz" if isinstance(v, str) else v
                                                        for k, v in c["arguments"].items()}} for c in step])
        *_, info = env.step("Done.")
        assert info["reward_components"]["tool_name"] == 0.0, task.id


def test_random_agent_earns_no_outcome_and_little_of_any_component(all_tasks):
    env = ToolUseEnv(tasks=TaskSet(all_tasks[::3]), max_turns=12)
    agent = RandomAgent(seed=0)
    sums: dict[str, float] = {}
    episodes = 0
    rng = np.random.default_rng(0)
    for task in env.tasks:
        obs, info = env.reset(options={"task_id": task.id}, seed=int(rng.integers(1 << 30)))
        agent.reset(info)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        episodes += 1
        assert info["outcome"] == 0.0, task.id
        for key in ("state_match", "outputs_found", "checklist"):
            sums[key] = sums.get(key, 0.0) + info["reward_components"][key]
    assert episodes >= 20
    means = {k: v / episodes for k, v in sums.items()}
    assert all(v <= 0.1 for v in means.values()), means


def test_a_lookup_other_than_the_gold_one_still_grounds_the_answer():
    """Grounding asks where the information came from, not which tool: search_files finds the port too."""
    env = ToolUseEnv()
    task = env.tasks.get("fs-port-00")
    folder = task.data["turns"][0]["gold"][0][0]["arguments"]["path"]
    port = task.data["turns"][0]["outputs"][0]
    env.reset(options={"task_id": task.id})
    env.step({"name": "search_files", "arguments": {"text": "port =", "path": folder}})
    *_, info = env.step(f"It listens on port {port}.")
    assert info["outcome"] == 1.0, info["units"]


def test_a_file_written_in_the_wrong_case_is_not_the_line_the_user_dictated():
    env = ToolUseEnv()
    task = env.tasks.get("fs-note-00")
    env.reset(options={"task_id": task.id})
    for action in task.oracle:
        if isinstance(action, list):
            action = copy.deepcopy(action)
            for call in action:
                if call["name"] == "write_file":
                    call["arguments"]["content"] = call["arguments"]["content"].upper()
        *_, info = env.step(action)
    assert info["outcome"] == 0.0 and not next(u for u in info["units"] if u["id"] == "state")["passed"]


def test_a_value_smuggled_into_an_argument_and_echoed_back_grounds_nothing():
    """The agent writes the answer into a call that echoes it (an event titled with it, cancelled again)."""
    env = ToolUseEnv()
    for task in (t for t in env.tasks if _family(t) == "mail-fact"):
        fact = task.data["turns"][0]["outputs"][0]
        env.reset(options={"task_id": task.id})
        _, _, _, _, info = env.step({"name": "create_event", "arguments": {
            "title": f"Note: {fact}", "date": "2025-03-15", "start": "08:00", "end": "08:30"}})
        event_id = json.loads(env.messages[-1]["content"])["event_id"]
        env.step({"name": "cancel_event", "arguments": {"event_id": event_id}})
        *_, info = env.step(_gold_replies(task)[0])
        assert info["outcome"] == 0.0, task.id
        assert next(u for u in info["units"] if u["id"] == "state")["passed"]  # the world is as it was


def test_what_an_error_tells_grounds_the_answer_too():
    """cal-conflict: trying the booking and reading the conflict error is a lookup of the clashing meeting."""
    env = ToolUseEnv()
    played = 0
    for task in (t for t in env.tasks if _family(t) == "cal-conflict"):
        env.reset(options={"task_id": task.id})
        turn_one = task.data["turns"][0]
        title = turn_one["outputs"][0]
        user = turn_one["user"]  # "Book 'X' on Monday 2025-03-10 from 09:00 to 10:00."
        name = user.split("'")[1]
        date = user.split(" from ")[0].split()[-1]
        start, end = user.rstrip(".").split(" from ")[1].split(" to ")
        obs, *_ = env.step({"name": "create_event", "arguments": {"title": name, "date": date, "start": start,
                                                                  "end": end}})
        assert obs.startswith("Error:") and "conflicts with" in obs
        if title not in obs:  # the slot overlaps two meetings and the calendar names the other one
            continue
        env.step(f"That time is taken by your {title}. Shall I book it right after?")
        for action in task.oracle[2:]:
            *_, info = env.step(action)
        assert info["outcome"] == 1.0, (task.id, [u for u in info["units"] if not u["passed"]])
        played += 1
    assert played >= 3


# ---------------------------------------------------------------------------- list everything, read nothing
# Issue 16.1: policies that never read the prompt (fs-errors reads only the log's path) make the same calls
# on every task of a family and answer with every value of the right kind they saw.
Policy = Callable[[ToolUseEnv, Any], str]


def _values(obs: str) -> Any:
    try:
        return json.loads(obs)
    except ValueError:
        return []


def every_port(env: ToolUseEnv, task: Any) -> str:
    obs, *_ = env.step({"name": "search_files", "arguments": {"text": "port =", "path": "/"}})
    ports = [hit["text"].split("=")[1].strip() for hit in _values(obs)]
    return f"The service listens on port {' or '.join(ports)}."


def every_mail_body(env: ToolUseEnv, task: Any) -> str:
    obs, *_ = env.step([{"name": "read_email", "arguments": {"email_id": f"M-{n}"}} for n in range(1, 6)])
    bodies = [m.get("body", "") for m in (_values(part) for part in obs.split("\n")) if isinstance(m, dict)]
    if not bodies:  # the observation of parallel calls: take every "body" the text holds
        bodies = [part.split('"body": "')[1].split('"}')[0].replace("\\n", " ")
                  for part in obs.split("\n") if '"body": "' in part]
    return "Here is what your mail says: " + " | ".join(bodies)


def every_product(env: ToolUseEnv, task: Any) -> str:
    seen: dict[str, Any] = {}
    for vowel in "aeiou":
        obs, *_ = env.step({"name": "search_products", "arguments": {"query": vowel}})
        seen.update({p["sku"]: p for p in _values(obs) if isinstance(p, dict)})
    return "In stock: " + "; ".join(f"{p['name']}: {p['stock']} units at {p['price']:.2f}" for p in seen.values())


def every_error_and_count(env: ToolUseEnv, task: Any) -> str:
    log = task.prompt.split(" in ")[1].split(",")[0]
    obs, *_ = env.step({"name": "read_file", "arguments": {"path": log}})
    messages = sorted({line.split(" ERROR ")[1] for line in obs.splitlines() if " ERROR " in line})
    return "There are 1, 2, 3, 4, 5, 6, 7 or 8 ERROR lines; they say: " + "; ".join(messages)


LIST_EVERYTHING: dict[str, Policy] = {"fs-port": every_port, "mail-fact": every_mail_body,
                                      "shop-stock": every_product, "fs-errors": every_error_and_count}
# The same calls and answers, tried on every family of their domain.
BY_DOMAIN: dict[str, Policy] = {"files": every_port, "office": every_mail_body, "shop": every_product}


def play_policy(env: ToolUseEnv, task: Any, policy: Policy) -> dict[str, Any]:
    env.reset(options={"task_id": task.id})
    info: dict[str, Any] = {}
    for _ in task.data["turns"]:
        *_, terminated, truncated, info = env.step(policy(env, task))
        if terminated or truncated:
            break
    return info


@pytest.fixture(scope="module")
def listed_tasks(all_tasks) -> list[Any]:
    extra = [t for t in (generate_task(seed) for seed in range(160)) if _family(t) in LIST_EVERYTHING]
    return [t for t in all_tasks if _family(t) in LIST_EVERYTHING] + extra


def test_listing_every_value_of_the_kind_without_reading_the_prompt_earns_nothing(listed_tasks):
    """Before: outcome 1 and no hack flag on 6/6 bundled tasks and every generated one of these families."""
    assert {_family(t) for t in listed_tasks} == set(LIST_EVERYTHING)
    env = ToolUseEnv(tasks=TaskSet(listed_tasks), max_turns=60)
    won = [t.id for t in listed_tasks if play_policy(env, t, LIST_EVERYTHING[_family(t)])["outcome"] != 0.0]
    assert won == [], won


def test_the_list_everything_calls_earn_nothing_on_any_family_of_their_domain(all_tasks):
    env = _env_for(all_tasks)
    won = [t.id for t in all_tasks if play_policy(env, t, BY_DOMAIN[t.data["domain"]])["outcome"] != 0.0]
    assert won == [], won


def test_an_honest_answer_in_another_format_still_wins(all_tasks):
    """The not_said criteria refuse competing values, not spellings: "9:00" for "09:00", "$24.99", a quote."""
    env = _env_for(all_tasks)
    variants = {
        "fs-errors": lambda reply, task: reply.replace(" ERROR line(s)", " lines at level ERROR")
        + " (" + next(line for line in task.data["world"]["files"]["files"][
            task.prompt.split(" in ")[1].split(",")[0]].splitlines() if " ERROR " in line) + ")",
        "shop-stock": lambda reply, task: reply.replace(" at ", " at $"),
        "cal-first-free": lambda reply, task: reply.replace(" from 0", " from "),
        "fs-port": lambda reply, task: reply.upper(),
        "mail-fact": lambda reply, task: f"> {reply}",
    }
    played = 0
    for task in (t for t in all_tasks if _family(t) in variants):
        env.reset(options={"task_id": task.id})
        for action in task.oracle:
            if isinstance(action, str):
                action = variants[_family(task)](action, task)
            *_, info = env.step(action)
        assert info["outcome"] == 1.0, (task.id, [u for u in info["units"] if not u["passed"]])
        played += 1
    assert played >= 25
