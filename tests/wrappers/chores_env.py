"""A small AgentEnv for the reward-wrapper tests: chores over two user turns, with units, a checklist
reported when each user turn ends, a farmable component and a hack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from execgym.core.env import AgentEnv, Grade
from execgym.core.report import TURN_CHECKLIST, Criterion, StepReport, Unit
from execgym.core.tasks import Task
from execgym.core.tools import Tool, ToolOutput

# task id -> chores per user turn (turn 1, turn 2); "scrub_oven" carries weight 3 in the checklist
CHORES = {
    "house": (["dishes", "laundry"], ["trash", "scrub_oven"]),
    "garden": (["water", "weed"], ["mow"]),
}
WEIGHTS = {"scrub_oven": 3.0}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


class ChoresEnv(AgentEnv):
    """Do every chore: ``do(chore)``; ``next_turn()`` closes user turn 1; ``finish()`` ends the episode.

    ``wander()`` earns the component ``busy`` and does nothing; ``cheat()`` marks everything done and is
    flagged as a hack.
    """

    description = "Chores over two user turns (reward-wrapper test env)."
    default_max_turns = 8

    def bundled_tasks(self) -> list[Task]:
        tasks = []
        for task_id, turns in CHORES.items():
            oracle = [call("do", chore=c) for c in turns[0]] + [call("next_turn")]
            oracle += [call("do", chore=c) for c in turns[1]] + [call("finish")]
            tasks.append(Task(id=task_id, prompt=f"Do the chores of the {task_id}.", data={"turns": turns},
                              oracle=tuple(oracle)))
        return tasks

    def _begin(self, task: Task) -> str:
        self.done: list[str] = []
        self.user_turn = 1
        self.cheated = False
        self._closed_turn: int | None = None
        return task.prompt

    def do(self, chore: str) -> ToolOutput:
        """Do one chore.

        Args:
            chore: its name.
        """
        chores = [c for turn in self.task.data["turns"] for c in turn]
        new = chore in chores and chore not in self.done
        if new:
            self.done.append(chore)
        return ToolOutput(f"{chore}: {'done' if new else 'nothing to do'}", components={"progress": float(new)})

    def wander(self) -> ToolOutput:
        """Walk around."""
        return ToolOutput("you walk around", components={"busy": 1.0})

    def next_turn(self) -> str:
        """Tell the user this turn's chores are done."""
        if self.user_turn == 1:
            self._closed_turn = 1
            self.user_turn = 2
            return "User: thanks! Now the second batch."
        return "There is no further turn."

    def cheat(self) -> str:
        """Mark everything done without doing it."""
        self.cheated = True
        self.done = [c for turn in self.task.data["turns"] for c in turn]
        return "all done (?)"

    def finish(self) -> str:
        """End the episode."""
        return "bye"

    def _tools(self, task: Task) -> list[Tool]:
        return [Tool.from_function(f) for f in (self.do, self.wander, self.next_turn, self.cheat)] + [
            Tool.from_function(self.finish, terminal=True)
        ]

    def _criteria(self, turn: int) -> list[Criterion]:
        return [
            Criterion(chore, chore in self.done, f"{chore} {'was' if chore in self.done else 'was not'} done",
                      weight=WEIGHTS.get(chore, 1.0), extra={"turn": turn})
            for chore in self.task.data["turns"][turn - 1]
        ]

    def _before_step(self) -> None:
        self._closed_turn = None

    def _step_extra(self, step: StepReport) -> Mapping[str, Any]:
        # A user turn's criteria are reported when it closes, as the tool-use env reports them.
        if self._closed_turn is None or step.ended:
            return {}
        return {TURN_CHECKLIST: [c.as_info() for c in self._criteria(self._closed_turn)]}

    def _grade(self, submitted: bool) -> Grade:
        chores = [c for turn in self.task.data["turns"] for c in turn]
        return Grade(
            outcome=float(all(c in self.done for c in chores)),
            units=[Unit(c, c in self.done) for c in chores],
            checklist=self._criteria(1) + self._criteria(2),
            hack_flags=["cheat() marked chores done"] if self.cheated else [],
        )
