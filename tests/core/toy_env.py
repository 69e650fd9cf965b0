"""A small env for the core's own tests (not registered for users): guess a secret word."""

from __future__ import annotations

from execgym.core.env import AgentEnv, Grade
from execgym.core.tasks import Task
from execgym.core.tools import Tool, ToolError, ToolOutput

WORDS = ["apple", "river", "stone", "cloud", "ember", "frost"]


class GuessEnv(AgentEnv):
    """Find the secret word: ``hint(position)`` reveals a letter, ``submit(word)`` ends the episode."""

    description = "Guess a secret word from letter hints (core test env)."
    default_max_turns = 6
    component_ranges = {"hints": (0.0, 100.0)}  # a count, not a score in 0..1

    def bundled_tasks(self) -> list[Task]:
        return [
            Task(
                id=f"word-{i}",
                prompt=f"Find the secret {len(w)}-letter word.",
                data={"word": w},
                oracle=({"name": "submit", "arguments": {"word": w}},),
                split="train" if i % 2 else "test",
            )
            for i, w in enumerate(WORDS)
        ]

    def task_generator(self):
        def generate(seed: int, difficulty: str | None) -> Task:
            word = WORDS[seed % len(WORDS)] + str(seed % 7)
            return Task(id=str(seed), prompt=f"Find the secret {len(word)}-letter word.", data={"word": word},
                        oracle=({"name": "submit", "arguments": {"word": word}},), difficulty=difficulty or "easy")
        return generate

    def _begin(self, task: Task) -> str:
        self.hints_used = 0
        self.guess: str | None = None
        return task.prompt

    def hint(self, position: int) -> ToolOutput:
        """Reveal one letter of the word.

        Args:
            position: 0-based index of the letter.
        """
        word = self.task.data["word"]
        if not 0 <= position < len(word):
            raise ToolError(f"position {position} is outside 0..{len(word) - 1}")
        self.hints_used += 1
        return ToolOutput(f"letter {position} is {word[position]!r}", components={"hint": 1.0})

    def crash(self) -> str:
        """A tool with a bug in it."""
        raise ZeroDivisionError("division by zero")

    def submit(self, word: str) -> str:
        """Submit your final answer.

        Args:
            word: the word.
        """
        self.guess = word
        return "submitted"

    def _tools(self, task: Task) -> list[Tool]:
        return [Tool.from_function(self.hint), Tool.from_function(self.crash),
                Tool.from_function(self.submit, terminal=True)]

    def _snapshot_state(self) -> dict:
        return {"hints_used": self.hints_used, "guess": self.guess}

    def _restore_state(self, state: dict) -> None:
        self.hints_used = state["hints_used"]
        self.guess = state["guess"]

    def _grade(self, submitted: bool) -> Grade:
        ok = self.guess == self.task.data["word"]
        return Grade(outcome=float(ok), components={"hints": float(self.hints_used)},
                     units=[{"id": "word", "passed": ok}],
                     hack_flags=["asked for all letters"] if self.hints_used >= len(self.task.data["word"]) else [])
