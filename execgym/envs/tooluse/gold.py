"""A task's gold calls: replaying them on its world, and which answers must rest on what they showed.

Both the loader (to refuse a task file whose gold calls cannot run) and the grader (for the gold end state)
replay the gold through :func:`replay_gold`, so a gold call that fails for any reason but the API's own
refusal is a task bug that is reported, never skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from execgym.core.tools import ToolError
from execgym.envs.tooluse.grading import mentions, result_text, shown_texts
from execgym.envs.tooluse.services import SERVICES, Service

__all__ = ["GoldCallFailed", "gold_calls", "must_be_looked_up", "replay_gold"]


class GoldCallFailed(ValueError):
    """A gold call that cannot run on the task's world; ``where`` is its path in the task's data."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def gold_calls(data: Mapping[str, Any]) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    """``(where, user turn number, call)`` for every gold call of a task, in the order the solution makes them.

    Example:
        >>> data = {"turns": [{"gold": [[{"name": "a"}], [{"name": "b"}, {"name": "c"}]]}]}
        >>> [(where, turn, call["name"]) for where, turn, call in gold_calls(data)][1:]
        [('turns[0].gold[1][0]', 1, 'b'), ('turns[0].gold[1][1]', 1, 'c')]
    """
    for t, turn in enumerate(data["turns"]):
        for s, step in enumerate(turn.get("gold", [])):
            for c, call in enumerate(step):
                yield f"turns[{t}].gold[{s}][{c}]", t + 1, call


def replay_gold(data: Mapping[str, Any], ran: list[dict[str, Any]] | None = None) -> dict[str, Service]:
    """Fresh services from a task's world with every gold call replayed, in order.

    A gold call the API refuses (a :class:`~execgym.core.tools.ToolError`) leaves the state as the API
    would, and the agent then reads the same error; any other failure raises :class:`GoldCallFailed`.
    ``ran``, when given, receives each gold call as ``{"turn", "arguments", "text"}`` (``text``: its result
    or error, as the agent would read it), for :func:`must_be_looked_up`.

    Example:
        >>> from execgym.envs.tooluse.tasks import generate_task
        >>> task = generate_task(0, "easy")
        >>> sorted(replay_gold(task.data)) == task.data["services"]
        True
    """
    world = data.get("world", {})
    services = {name: SERVICES[name](world.get(name, {})) for name in data["services"]}
    owner = {tool: s for s in services.values() for tool in s.tool_names}
    for where, number, call in gold_calls(data):
        arguments = call.get("arguments", {})
        record: dict[str, Any] = {"turn": number, "arguments": arguments}
        if ran is not None:
            ran.append(record)
        try:
            value = getattr(owner[call["name"]], call["name"])(**json.loads(json.dumps(arguments)))
        except ToolError as exc:
            record["text"] = f"Error: {exc}"
            continue
        except Exception as exc:
            raise GoldCallFailed(where, f"{call['name']} cannot run on this world ({type(exc).__name__}: {exc})") \
                from None
        record["text"] = result_text(value)
    return services


def must_be_looked_up(output: str, ran: Sequence[Mapping[str, Any]], turn: int) -> bool:
    """Whether an answer's ``output`` in user turn ``turn`` must come from a lookup (``grounded``).

    ``ran`` are the gold calls as :func:`replay_gold` records them. The output must be looked up when a gold
    call's result up to the turn shows it, except when the turn's gold calls send it themselves (an end time
    the solution computes, then books) and no call of the same turn showed it before: a value the solution
    writes is checked by the state, and an agent may well compute it without reading it anywhere.

    Example:
        >>> ran = [{"turn": 1, "arguments": {"id": "O-1"}, "text": '{"status": "shipped"}'},
        ...        {"turn": 1, "arguments": {"start": "10:00"}, "text": '{"end": "11:00"}'}]
        >>> must_be_looked_up("shipped", ran, 1), must_be_looked_up("11:00", ran, 1)
        (True, True)
        >>> must_be_looked_up("10:00", ran, 1)
        False
    """
    upto = [r for r in ran if r["turn"] <= turn]
    shown = shown_texts(upto)
    texts = [(r, t) for r, t in zip([r for r in upto if "text" in r], shown)]
    sends = next((k for k, r in enumerate(upto) if r["turn"] == turn
                  and mentions(json.dumps(r["arguments"], ensure_ascii=False), output)[0]), None)
    if sends is None:
        return mentions("\n".join(shown), output)[0]
    before = [t for r, t in texts if r["turn"] == turn and upto.index(r) < sends]
    return mentions("\n".join(before), output)[0]
