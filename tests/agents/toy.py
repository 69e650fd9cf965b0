"""A GuessEnv-style toy family for the trainer's tests: submit the family's secret word.

Every task of the family has the same secret (``river``), which no task statement reveals: the only way to
learn it is the reward. The warm start (:class:`AnyWordAgent`'s demonstrations) teaches the tool-call
format and a uniform guess among four words, so a policy that starts at ~1/4 and ends higher has learned
from the outcome alone.
"""

from __future__ import annotations

import numpy as np

from execgym.agents.base import BatchedAgent
from execgym.core.env import AgentEnv, Grade
from execgym.core.tasks import Task
from execgym.core.tools import Tool

WORDS = ["apple", "river", "stone", "cloud"]
SECRET = "river"


class SecretWordEnv(AgentEnv):
    """Submit the secret word: ``submit(word)`` ends the episode; outcome 1 when it is the secret.

    Its prompt and tool text are part of what the trainer tests learn from: keep them as they are.
    """

    description = "Submit the family's secret word (trainer test env)."
    default_max_turns = 2

    def bundled_tasks(self) -> list[Task]:
        generate = self.task_generator()
        return [generate(i, "easy") for i in range(4)]

    def task_generator(self):
        def generate(seed: int, difficulty: str | None) -> Task:
            return Task(id=f"secret-{seed}", prompt=f"Task {seed % 97}: submit the secret word.",
                        data={"word": SECRET}, oracle=({"name": "submit", "arguments": {"word": SECRET}},),
                        difficulty=difficulty or "easy")
        return generate

    def _system_prompt(self, task: Task) -> str:
        return "Answer with a tool call."

    def _begin(self, task: Task) -> str:
        self.guess: str | None = None
        return task.prompt

    def submit(self, word: str) -> str:
        """Submit the word.

        Args:
            word: the word.
        """
        self.guess = word
        return "submitted"

    def _tools(self, task: Task) -> list[Tool]:
        return [Tool.from_function(self.submit, terminal=True)]

    def _grade(self, submitted: bool) -> Grade:
        return Grade(outcome=float(self.guess == self.task.data["word"]))


class AnyWordAgent(BatchedAgent):
    """Submits a uniformly random one of the four words: the format, without knowing the secret."""

    name = "any-word"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, info):
        pass

    def act(self, observation, info):
        return {"name": "submit", "arguments": {"word": WORDS[int(self.rng.integers(len(WORDS)))]}}
