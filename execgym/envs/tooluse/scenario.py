"""The scenario DSL tool-use tasks are written in: a seeded random source and :class:`Scenario`.

A template builds a task by *running* its gold calls on the real services through a :class:`Scenario`, so
the outputs and checks come from what the services return, never from a second copy of their logic.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from execgym.envs.tooluse.gold import must_be_looked_up
from execgym.envs.tooluse.grading import mentions, normalize_text, result_text
from execgym.envs.tooluse.services import SERVICES, Service

__all__ = ["WRITE_TOOLS", "Retry", "Rng", "Scenario"]


class Rng:
    """A seeded random source that gives the same draws on every Python version.

    Only ``random.Random.random()`` is guaranteed stable across versions, so every draw is built on it.

    Example:
        >>> r = Rng("demo", 1)
        >>> r.below(10) == Rng("demo", 1).below(10), sorted(r.sample(range(5), 5))
        (True, [0, 1, 2, 3, 4])
    """

    def __init__(self, *seed: Any) -> None:
        self._random = random.Random(json.dumps(seed))

    def below(self, n: int) -> int:
        return min(int(self._random.random() * n), n - 1)

    def randint(self, lo: int, hi: int) -> int:
        return lo + self.below(hi - lo + 1)

    def choice(self, items: Sequence[Any]) -> Any:
        return items[self.below(len(items))]

    def sample(self, items: Sequence[Any] | range, k: int) -> list[Any]:
        pool = list(items)
        for i in range(k):
            j = i + self.below(len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


class Retry(Exception):
    """The drawn world does not fit the template (e.g. an answer would appear in the question)."""


WRITE_TOOLS = {
    "write_file", "append_line", "create_directory", "move_file", "copy_file", "delete_file",
    "create_event", "reschedule_event", "invite_attendees", "cancel_event", "send_email",
    "place_order", "cancel_order", "refund_item", "update_shipping_address",
}
# The arguments a "called" criterion pins for a write: free text and equivalent spellings are left out.
_KEY_ARGS = {
    "move_file": ("source",),
    "copy_file": ("source",),
    "write_file": ("path",),
    "send_email": ("to",),
    "create_event": ("title", "date", "start", "end", "attendees"),
}


class Scenario:
    """Builds one task by running its gold calls on live services.

    ``user`` opens a turn, ``step`` runs one agent step's calls (several = parallel calls) and records them
    as gold, ``reply`` closes the turn with the answer and the outputs it must hold, ``check`` adds a
    checklist criterion to the current turn. Write calls get a ``called`` criterion automatically. The world
    given may still be changed until the first ``user`` message: the services start from it then.

    Example:
        >>> sc = Scenario("shop", {"shop": {"orders": {"O-1": {"customer_id": "C-1", "placed": "2025-03-01",
        ...     "status": "shipped", "items": [], "address": "x", "total": 5.0}}}})
        >>> sc.user("Where is my order O-1?")
        >>> sc.call("get_order", order_id="O-1")["status"]
        'shipped'
        >>> sc.reply("Order O-1 has shipped.", "shipped")
        >>> sc.build("demo", "easy")[1]
        ([{'name': 'get_order', 'arguments': {'order_id': 'O-1'}}], 'Order O-1 has shipped.')
    """

    def __init__(self, domain: str, world: dict[str, Any]) -> None:
        self.domain = domain
        self.world = world
        self.services: dict[str, Service] = {}
        self._owner: dict[str, Service] = {}
        self.turns: list[dict[str, Any]] = []
        self.checklist: list[dict[str, Any]] = []
        self._ran: list[dict[str, Any]] = []  # every gold call so far: its arguments and the text it returned

    def _start(self) -> None:
        # A template may still shape the world it was given (force an order's status) until the first message.
        self.services = {name: SERVICES[name](state) for name, state in json.loads(json.dumps(self.world)).items()}
        self.world = {name: service.state() for name, service in self.services.items()}
        self._owner = {tool: s for s in self.services.values() for tool in s.tool_names}

    def user(self, text: str) -> None:
        if self.turns and self.turns[-1]["reply"] is None:
            raise ValueError("the previous turn has no reply")
        if not self.turns:
            self._start()
        self.turns.append({"user": text, "gold": [], "outputs": [], "reply": None})

    def step(self, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
        results, recorded = [], []
        for name, arguments in calls:
            arguments = json.loads(json.dumps(arguments))
            result = getattr(self._owner[name], name)(**json.loads(json.dumps(arguments)))
            results.append(result)
            self._ran.append({"turn": len(self.turns), "arguments": arguments, "text": result_text(result)})
            recorded.append({"name": name, "arguments": arguments})
            if name in WRITE_TOOLS:
                keys = _KEY_ARGS.get(name, tuple(arguments))
                self.check("called", tool=name, args={k: arguments[k] for k in keys if k in arguments})
        self.turns[-1]["gold"].append(recorded)
        return results

    def call(self, tool: str, /, **arguments: Any) -> Any:
        return self.step((tool, arguments))[0]

    def reply(self, text: str, *outputs: Any) -> None:
        """Close the turn with the gold answer; each output gets a ``said`` criterion.

        An output that a gold result shows (a status, a price) must come from what the agent's calls showed
        (``grounded``, see :func:`must_be_looked_up`); one the gold answer computes (a count) or writes (an
        end time) needs only to be said.
        """
        turn = self.turns[-1]
        outputs_text = [str(o) for o in outputs]
        for output in outputs_text:
            if not mentions(text, output)[0]:
                raise ValueError(f"the gold reply {text!r} does not mention {output!r}")
            self.check("said", text=output, grounded=must_be_looked_up(output, self._ran, len(self.turns)))
        turn["reply"], turn["outputs"] = text, outputs_text

    def distractors(self, *values: Any) -> None:
        """Refuse an answer of the current turn that also names these competing values (``not_said``).

        The values of the kind the answer asks for that are wrong here (the other project's port, another
        e-mail's fact, another product's price): an answer that lists every value a lookup showed is no
        answer. Call after :meth:`reply`; a value the gold answer or the user's messages mention, or that
        mentions an output, is left out, so an honest answer is never refused.
        """
        turn = self.turns[-1]
        said = "\n".join([turn["reply"] or "", *turn["outputs"], *(t["user"] for t in self.turns)])
        done = {normalize_text(str(c["text"])) for c in self.checklist
                if c["kind"] == "not_said" and c["turn"] == len(self.turns)}
        for value in dict.fromkeys(str(v) for v in values):
            if (not normalize_text(value) or normalize_text(value) in done or mentions(said, value)[0]
                    or any(mentions(value, o)[0] for o in turn["outputs"])):
                continue
            done.add(normalize_text(value))
            self.check("not_said", text=value)

    def check(self, kind: str, **fields: Any) -> None:
        """Add a criterion to the current turn; a ``called`` one on a read-only tool only shapes (not required)."""
        if kind == "called" and fields.get("tool") not in WRITE_TOOLS:
            fields.setdefault("required", False)
        turn = len(self.turns)
        number = sum(1 for c in self.checklist if c["turn"] == turn) + 1
        self.checklist.append({"id": f"t{turn}-{number}-{kind}", "turn": turn, "kind": kind, **fields})

    def build(self, template: str, difficulty: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
        """The task's data and oracle; raises Retry when the world makes a poor task."""
        if not self.turns or self.turns[-1]["reply"] is None:
            raise ValueError("every turn needs a reply")
        for i, turn in enumerate(self.turns):
            # Later messages may repeat what the agent said; up to the turn, the answer must be news.
            asked = "\n".join(t["user"] for t in self.turns[: i + 1])
            for output in turn["outputs"]:
                if mentions(asked, output)[0]:
                    raise Retry(f"output {output!r} appears in the user's messages")
        final = {name: s.comparable_state() for name, s in self.services.items()}
        initial = {name: SERVICES[name](state).comparable_state() for name, state in self.world.items()}
        if final == initial and not any(t["outputs"] for t in self.turns):
            raise Retry("the task neither changes the world nor asks for information")
        data = {
            "domain": self.domain,
            "template": template,
            "services": sorted(self.world),
            "world": self.world,
            "turns": [{"user": t["user"], "gold": t["gold"], "outputs": t["outputs"]} for t in self.turns],
            "checklist": self.checklist,
        }
        oracle: list[Any] = []
        for turn in self.turns:
            oracle.extend(turn["gold"])
            oracle.append(turn["reply"])
        return data, tuple(oracle)
