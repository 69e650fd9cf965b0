"""ToolUseEnv on its own tasks: oracle, no-tool agents, checklist evidence, ToolRL components, the contract."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from execgym.core import report as R
from execgym.core.tasks import TaskSet
from execgym.envs.tooluse import tasks as tooluse_tasks
from execgym.envs.tooluse.env import CHECKLIST_SO_FAR, TURN_CHECKLIST, USER_TURN, ToolUseEnv
from execgym.envs.tooluse.tasks import Scenario, generate_task, shop_world

ENV_ID = "execgym/ToolUse-v0"


@pytest.fixture(scope="module")
def env() -> ToolUseEnv:
    return ToolUseEnv()


def play(env: ToolUseEnv, task_id: str, actions=None) -> tuple[float, bool, bool, dict, list[dict]]:
    _, info = env.reset(options={"task_id": task_id})
    infos = []
    reward, terminated, truncated = 0.0, False, False
    for action in actions if actions is not None else env.task.oracle:
        _, reward, terminated, truncated, info = env.step(action)
        infos.append(info)
        if terminated or truncated:
            break
    return float(reward), terminated, truncated, info, infos


def run_until_done(env: ToolUseEnv, task_id: str, policy) -> dict:
    obs, info = env.reset(options={"task_id": task_id})
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        if terminated or truncated:
            return info


def test_bundled_set_size_domains_difficulties_and_splits(env):
    tasks = list(env.tasks)
    assert len(tasks) >= 150
    assert {t.data["domain"] for t in tasks} == {"shop", "office", "files"}
    assert {t.difficulty for t in tasks} == {"easy", "medium", "hard"}
    assert set(env.tasks.splits()) == {"train", "test"}
    assert sum(len(t.data["turns"]) > 1 for t in tasks) >= 30
    assert any(len(step) > 1 for t in tasks for turn in t.data["turns"] for step in turn["gold"])  # parallel calls
    assert len(ToolUseEnv(split="test").tasks) == env.tasks.splits()["test"]


def test_bundled_file_is_what_the_committed_script_writes():
    assert tooluse_tasks.main(["--check"]) == 0


def test_oracle_solves_every_bundled_task_with_every_criterion(env):
    for task_id in env.tasks.ids():
        reward, terminated, truncated, info, _ = play(env, task_id)
        assert (reward, terminated, truncated) == (1.0, True, False), (task_id, info["units"])
        assert info["checklist"] and all(item["passed"] for item in info["checklist"]), task_id
        assert info["reward_components"]["efficiency"] == 1.0 and info["hack_flags"] == []


def test_oracle_solves_200_generated_tasks():
    env = ToolUseEnv(dataset="generated")
    for seed in range(200):
        task = env.tasks.generate(seed)
        reward, terminated, _, info, _ = play(env, task.id)
        assert reward == 1.0 and terminated, (task.id, info["units"])
        assert all(item["passed"] for item in info["checklist"]), task.id


def test_generator_is_seeded_and_honours_difficulty():
    assert generate_task(3, "medium").data == generate_task(3, "medium").data
    assert generate_task(3, "medium").data != generate_task(4, "medium").data
    for level in ("easy", "medium", "hard"):
        assert {generate_task(s, level).difficulty for s in range(10)} == {level}
    env = ToolUseEnv(dataset="generated:hard")
    _, info = env.reset(seed=5)
    assert info["task_id"].startswith("gen-hard-") and info["difficulty"] == "hard"


@pytest.mark.parametrize("policy", [lambda obs: "Done, all sorted!", lambda obs: f"Sure. You said: {obs}"],
                         ids=["done", "parrot"])
def test_answering_without_tools_scores_zero(env, policy):
    for task_id in env.tasks.ids():
        info = run_until_done(env, task_id, policy)
        assert info["outcome"] == 0.0, task_id
        assert info["turns"] == len(env.task.data["turns"])


def test_a_tool_error_is_a_result_the_agent_reads(env):
    _, info = env.reset(options={"task_id": "shop-cancel-shipped-00"})
    order_id = env.task.data["turns"][0]["gold"][0][0]["arguments"]["order_id"]
    obs, reward, terminated, truncated, info = env.step(
        {"name": "cancel_order", "arguments": {"order_id": order_id, "reason": "no_longer_needed"}})
    assert obs.startswith("Error: order") and "only pending orders can be cancelled" in obs
    assert info["tool_calls"][0]["error"] is True and not (terminated or truncated)
    obs, *_ = env.step({"name": "get_order", "arguments": {"order_id": "O-0"}})
    assert obs == "Error: no order with that id"  # errors never echo an argument (grounding, issue 16.2)


def _two_pending_task() -> ToolUseEnv:
    """A hand-built task (data only) where the customer has two pending orders and wants the latest cancelled."""
    world = shop_world(tooluse_tasks.Rng("test", 0))
    shop = world["shop"]
    cid = sorted(shop["customers"])[0]
    mine = sorted(oid for oid, o in shop["orders"].items() if o["customer_id"] == cid)
    for oid in mine:
        shop["orders"][oid]["status"] = "pending"
    email = shop["customers"][cid]["email"]
    sc = Scenario("shop", world)
    sc.user(f"I'm {email}. Cancel my most recent pending order, I no longer need it.")
    sc.call("find_customer", email=email)
    orders = sc.call("list_orders", customer_id=cid)
    latest = orders[-1]["order_id"]
    for other in orders[:-1]:
        sc.check("not_called", tool="cancel_order", args={"order_id": other["order_id"]})
    result = sc.call("cancel_order", order_id=latest, reason="no_longer_needed")
    sc.reply(f"Cancelled {latest}; {result['refunded']:.2f} refunded.", latest, f"{result['refunded']:.2f}")
    sc.user("Thanks. How much did my first order cost?")
    total = sc.call("get_order", order_id=orders[0]["order_id"])["total"]
    sc.reply(f"It cost {total:.2f}.", f"{total:.2f}")
    data, oracle = sc.build("test-two-pending", "medium")
    task = tooluse_tasks.Task(id="two-pending", prompt=data["turns"][0]["user"], data=data, oracle=oracle)
    return ToolUseEnv(tasks=TaskSet([task]))


def test_checklist_items_carry_the_evidence_that_decided_them():
    env = _two_pending_task()
    data = env.tasks.get("two-pending").data
    first, latest = (data["turns"][0]["gold"][1][0], data["turns"][0]["gold"][2][0])
    assert first["name"] == "list_orders" and latest["name"] == "cancel_order"
    wrong = next(c for c in data["checklist"] if c["kind"] == "not_called")["args"]["order_id"]
    actions = [data["turns"][0]["gold"][0],
               {"name": "cancel_order", "arguments": {"order_id": wrong, "reason": "no_longer_needed"}},
               "I cancelled your order."]
    reward, terminated, _, info, infos = play(env, "two-pending", actions)
    assert not terminated and reward == 0.0
    extra = info[R.EXTRA]
    turn = {item["id"]: item for item in extra[TURN_CHECKLIST]}
    assert extra[USER_TURN] == 1 and extra[CHECKLIST_SO_FAR] == extra[TURN_CHECKLIST]
    assert R.CHECKLIST not in info  # the checklist of all criteria comes at the end
    bad = next(item for item in turn.values() if item["extra"]["kind"] == "not_called" and not item["passed"])
    assert bad["evidence"] == f'step 2: cancel_order(order_id="{wrong}", reason="no_longer_needed") was called'
    called = next(item for item in turn.values() if item["extra"]["kind"] == "called")
    assert not called["passed"] and "no successful matching call" in called["evidence"]
    said = [item for item in turn.values() if item["extra"]["kind"] == "said"]
    assert [s["passed"] for s in said] == [False, False] and "not in the reply" in said[0]["evidence"]
    assert set(bad) == {"id", "description", "passed", "evidence", "weight", "extra"}
    assert set(bad["extra"]) == {"turn", "kind", "guard"}
    assert R.EXTRA not in infos[0] and R.EXTRA not in infos[1]
    # The follow-up message arrives after the answer, and the final info lists every criterion.
    _, reward, terminated, _, info = env.step("It cost a lot.")
    assert terminated and reward == 0.0 and info["outcome"] == 0.0
    turns = [item["extra"]["turn"] for item in info["checklist"]]
    assert turns == sorted(turns) and CHECKLIST_SO_FAR not in info[R.EXTRA]
    assert info[R.EXTRA][TURN_CHECKLIST] == [item for item in info["checklist"] if item["extra"]["turn"] == 2]
    assert next(u for u in info["units"] if u["id"] == "state")["passed"] is False
    assert "shop.orders" in next(u for u in info["units"] if u["id"] == "state")["evidence"]


def test_multi_turn_observations_are_the_users_follow_up_messages(env):
    task = next(t for t in env.tasks if len(t.data["turns"]) == 3)
    env.reset(options={"task_id": task.id})
    seen = []
    for action in task.oracle:
        obs, *_ = env.step(action)
        if isinstance(action, str):
            seen.append(obs)
    assert seen[:2] == [task.data["turns"][1]["user"], task.data["turns"][2]["user"]]
    assert "no further requests" in seen[2]


def test_truncation_decides_open_and_unreached_turns():
    env = ToolUseEnv(max_turns=1)
    task = next(t for t in env.tasks if len(t.data["turns"]) == 3)
    _, terminated, truncated, info, _ = play(env, task.id, task.oracle[:1])
    assert truncated and not terminated and info["outcome"] == 0.0 and info["submitted"] is False
    assert len(info["checklist"]) == len(task.data["checklist"])
    later = [item for item in info["checklist"] if item["extra"]["turn"] > 1]
    assert later and all(not i["passed"] and "ended before turn" in i["evidence"] for i in later)
    assert {item["id"] for item in info[R.EXTRA][TURN_CHECKLIST]} == {item["id"] for item in info["checklist"]}


def test_toolrl_components_per_step(env):
    task = env.tasks.get("shop-place-00")
    _, _, _, _, infos = play(env, task.id)
    for info in infos:
        parts = info["reward_components"]
        assert parts["format"] == parts["tool_name"] == parts["param_names"] == parts["param_values"] == 1.0
    assert [i["reward_components"]["calls"] for i in infos] == [3.0, 1.0, 0.0]

    step1, step2 = task.data["turns"][0]["gold"]
    env.reset(options={"task_id": task.id})
    # Half the parallel step, one argument wrong: names 2/3, values 1/3 of the gold arguments.
    _, _, _, _, info = env.step([step1[0], {"name": "search_products", "arguments": {"query": "nothing"}}])
    parts = info["reward_components"]
    assert parts["tool_name"] == pytest.approx(2 / 3) and parts["param_names"] == pytest.approx(2 / 3)
    assert parts["param_values"] == pytest.approx(1 / 3) and parts["calls"] == 2.0
    # An answer before the order is placed: the turn still lacks gold calls.
    _, _, _, _, info = env.step("Your order is placed.")
    assert info["reward_components"]["tool_name"] == 0.0 and info["reward_components"]["format"] == 1.0

    env.reset(options={"task_id": task.id})
    _, _, _, _, info = env.step({"name": "get_order", "arguments": {"order_id": "O-1"}})
    assert info["reward_components"]["tool_name"] == 0.0
    _, _, _, _, info = env.step('<tool_call>{"name": "nope", "arguments": {}}</tool_call>')
    parts = info["reward_components"]
    assert parts["format"] == 0.0 and parts["tool_name"] == parts["param_values"] == 0.0 and parts["calls"] == 0.0


def test_efficiency_counts_only_when_the_outcome_is_right(env):
    task = env.tasks.get("shop-status-00")
    order_id = task.oracle[0][0]["arguments"]["order_id"]
    extra = {"name": "get_order", "arguments": {"order_id": order_id}}
    reward, *_, info, _ = play(env, task.id, [extra, *task.oracle])
    assert reward == 1.0 and info["reward_components"]["efficiency"] == 0.5
    reward, *_, info, _ = play(env, task.id, [extra, "No idea."])
    assert reward == 0.0 and info["reward_components"]["efficiency"] == 0.0


def test_stuffed_answers_are_flagged(env):
    info = run_until_done(env, "shop-status-00", lambda obs: " ".join(str(n) for n in range(40)))
    assert info["hack_flags"] and "stuffed" in info["hack_flags"][0]


def test_text_actions_and_openai_messages_work_like_dicts(env):
    task = env.tasks.get("fs-archive-00")
    actions = []
    for action in task.oracle:
        if isinstance(action, list):
            action = "\n".join(f"<tool_call>{json.dumps(call)}</tool_call>" for call in action)
        actions.append(action)
    reward, terminated, *_ = play(env, task.id, actions)
    assert reward == 1.0 and terminated


def test_reset_info_contract_and_render():
    env = ToolUseEnv(render_mode="ansi")
    obs, info = env.reset(seed=0)
    assert {"task_id", "tools", "system_prompt", "messages"} <= set(info)
    assert obs == env.task.data["turns"][0]["user"]
    names = [t["function"]["name"] for t in info["tools"]]
    assert len(names) == len(set(names)) and "plain text" in info["system_prompt"]
    for action in env.task.oracle:
        env.step(action)
    text = env.render()
    assert "=== outcome 1.0" in text and "--- tool" in text


@pytest.mark.filterwarnings("ignore:.*not having a spec")
def test_check_env_passes():
    check_env(ToolUseEnv(render_mode="ansi").unwrapped, skip_render_check=False)
    check_env(ToolUseEnv(dataset="generated").unwrapped)


def test_gym_make():
    import execgym  # noqa: F401 - registers the ids it knows

    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="execgym.envs.tooluse.env:ToolUseEnv")
    env = gym.make(ENV_ID, split="test")
    obs, info = env.reset(seed=1)
    assert info["split"] == "test" and isinstance(obs, str)
    env.close()


def test_snapshot_branches_are_independent_and_grade_as_if_played_from_the_start():
    from execgym.envs.tooluse.env import ToolUseEnv

    env = ToolUseEnv()
    task = next(t for t in env.tasks if len(t.oracle) >= 3)
    env.reset(options={"task_id": task.id})
    env.step(task.oracle[0])
    snap = env.snapshot()
    other = ToolUseEnv()
    other.restore(snap)
    for action in task.oracle[1:]:  # branch A plays the rest of the gold solution
        *_, terminated, truncated, info_a = env.step(action)
        if terminated or truncated:
            break
    assert info_a["outcome"] == 1.0
    *_, info_b = other.step("I could not do it, sorry.")  # branch B gives up on this turn
    for _ in range(25):
        if info_b.get("outcome") is not None:
            break
        *_, info_b = other.step("Nothing more.")
    assert info_b["outcome"] == 0.0
    env.restore(snap)  # the snapshot is untouched by both branches
    for action in task.oracle[1:]:
        *_, terminated, truncated, info_c = env.step(action)
        if terminated or truncated:
            break
    assert info_c["outcome"] == 1.0 and info_c["checklist"] == info_a["checklist"]
