"""verifiers: an execgym env as a verifiers (v1) environment, a taskset with its own harness.

verifiers 0.4 builds an environment from a *taskset* (the tasks and their rubric: ``@vf.reward`` and
``@vf.metric`` methods of the task) and a *harness* (the program that plays a task, calling the model only
through the rollout's interception endpoint, which records every turn on the trace). Here the taskset yields
one task per execgym episode (its ``task_id`` and ``seed``), and the harness plays that episode in-process:
each model turn (a chat completion through the endpoint) is one ``env.step``, with execgym's own
:class:`~execgym.agents.OpenAIChatAgent` and :func:`~execgym.rollout.episode.run_episode`. The rubric pays
the env's reward (the episode's return after the wrappers: the outcome without them) as ``reward``, and
reports ``outcome``, ``turns`` and each reward component summed over the episode (``component/<name>``) as
metrics; the whole episode summary is on ``trace.info["execgym"]``.

Example (any OpenAI-compatible server, e.g. ``execgym serve``), with verifiers' eval entry point::

    import asyncio
    import verifiers.v1 as vf
    from verifiers.v1.cli.eval.runner import run_eval
    from verifiers.v1.configs.cli.eval import EvalConfig
    from execgym.integrations.verifiers import load_environment

    env = load_environment("execgym/TextToSQL-v0", num_tasks=4, seed=0, max_turns=8)
    config = EvalConfig(env=env.config, model="tiny", push=False, rich=None,
                        client=vf.EvalClientConfig(base_url="http://127.0.0.1:8000/v1"))
    episodes = asyncio.run(run_eval(config))   # each trace: .reward, .metrics, .info["execgym"]

verifiers imports a taskset by a plain module name, so importing this module also makes it importable as
:data:`TASKSET_ID` (``execgym_verifiers``), the id :func:`load_environment` puts in the config. The same run
from verifiers' command line (``verifiers.v1.cli.eval.main.main``, what ``vf-eval`` runs), after this module is
imported: ``execgym_verifiers --env.taskset.env-id execgym/TextToSQL-v0 --env.taskset.num-tasks 4
--env.agent.harness.id execgym_verifiers --env.agent.runtime.type subprocess -m tiny --client.base-url URL``
(verifiers' default runtime is its remote one; this harness needs none of its own).

Failures: an episode whose machinery failed (execgym's ``infra_error``) raises :class:`verifiers.v1.SandboxError`
in the harness, and one whose model could not be reached raises :class:`verifiers.v1.HarnessError` (verifiers
records its own ``ProviderError`` instead when its interception saw the failure): verifiers then marks the
rollout failed the way it marks its own (``trace.ok`` False, the error on ``trace.errors``, no reward scored),
retries it per its retry config, and ``--resume`` re-runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import verifiers.v1 as vf
from pydantic import Field

from execgym.core import report as R
from execgym.rollout.episode import EpisodeResult, EpisodeSpec, episode_specs, make_wrapped_env, run_episode

__all__ = ["TASKSET_ID", "ExecgymHarness", "ExecgymTaskset", "load_environment"]

TASKSET_ID = "execgym_verifiers"
"""The verifiers taskset id of this module (verifiers imports a taskset by a plain module name)."""
INFO_KEY = "execgym"
"""Where the episode's summary goes on ``trace.info``."""

# verifiers resolves a taskset id to a module with `importlib.import_module(id)`; a dotted path is refused.
sys.modules.setdefault(TASKSET_ID, sys.modules[__name__])


class ExecgymTaskData(vf.TaskData):
    """One execgym episode: the env, how it is built, and the ``seed`` / ``task_id`` (``id``) of its reset."""

    env_id: str
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    wrappers: list[str] = Field(default_factory=list)
    seed: int | None = None


class ExecgymTask(vf.Task[ExecgymTaskData]):
    """The rubric: the env's reward, and its outcome and components as metrics."""

    @vf.reward
    async def reward(self, trace: vf.Trace) -> float:
        """The episode's return: what the env (and its reward wrappers) paid."""
        return float(_summary(trace)["total_reward"])

    @vf.metric
    async def execgym(self, trace: vf.Trace) -> dict[str, float]:
        summary = _summary(trace)
        metrics = {R.OUTCOME: float(summary[R.OUTCOME]), R.TURNS: float(summary[R.TURNS])}
        metrics.update({f"component/{name}": float(value) for name, value in summary[R.REWARD_COMPONENTS].items()})
        return metrics


def _summary(trace: vf.Trace) -> dict[str, Any]:
    summary = trace.info.get(INFO_KEY)
    if not isinstance(summary, Mapping):
        raise vf.TaskError("the execgym harness recorded no episode on this trace")
    return dict(summary)


class ExecgymTasksetConfig(vf.TasksetConfig):
    """Which env and which episodes: ``task_ids`` (with seeds ``seed, seed+1, ...``) or ``num_tasks`` seeds."""

    env_id: str = "execgym/TextToSQL-v0"
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    wrappers: list[str] = Field(default_factory=list)
    """Reward wrapper specs, innermost first: ``"NAME"`` or ``'NAME:{"json": "kwargs"}'`` (they travel as JSON)."""
    num_tasks: int = Field(8, ge=1)
    seed: int = 0
    task_ids: list[str] | None = None


class ExecgymTaskset(vf.Taskset[ExecgymTask, ExecgymTasksetConfig]):
    """One task per episode; each task's prompt is the env's own first chat for that ``seed`` / ``task_id``."""

    def load(self) -> Iterable[ExecgymTask]:
        config = self.config
        specs: list[EpisodeSpec] = (
            [EpisodeSpec(seed=config.seed + i, options={"task_id": task_id})
             for i, task_id in enumerate(config.task_ids)]
            if config.task_ids is not None else episode_specs(config.num_tasks, seed=config.seed))
        env = make_wrapped_env(config.env_id, config.env_kwargs, config.wrappers)
        try:
            for spec in specs:
                observation, info = env.reset(seed=spec.seed, options=spec.options)
                data = ExecgymTaskData(id=str(info[R.TASK_ID]), name=str(info[R.TASK_ID]), prompt=str(observation),
                                       system_prompt=str(info[R.SYSTEM_PROMPT]), env_id=config.env_id,
                                       env_kwargs=dict(config.env_kwargs), wrappers=list(config.wrappers),
                                       seed=spec.seed)
                yield ExecgymTask(data, config.task)
        finally:
            env.close()


class ExecgymHarnessConfig(vf.HarnessConfig):
    """The harness's knobs, under ``--env.agent.harness.*``."""

    id: str = TASKSET_ID
    tool_mode: Literal["native", "text"] = "native"
    """``native``: the env's tools go to the server as ``tools=``; ``text``: as ``<tool_call>`` text in the prompt."""
    record_dir: str | None = None
    """A folder where execgym records each episode (``<trace id>.jsonl``, replayable with ``execgym replay``)."""


class ExecgymHarness(vf.Harness[ExecgymHarnessConfig]):
    """Plays the task's execgym episode in-process; every model call goes through the rollout's endpoint."""

    APPENDS_SYSTEM_PROMPT = True
    EXECUTES_CODE = False  # the env runs the agent's code in its own sandbox, not in verifiers' runtime
    NEEDS_CONTAINER = False

    async def launch(self, ctx: vf.ModelContext, trace: vf.Trace, runtime: vf.Runtime, endpoint: str, secret: str,
                     mcp_urls: dict[str, str], data: vf.TaskData) -> vf.ProgramResult:
        if not isinstance(data, ExecgymTaskData):
            raise vf.HarnessError(f"the execgym harness plays execgym tasks, not {type(data).__name__}")
        # execgym's env and agent are synchronous; the endpoint is served on this event loop.
        record = None if self.config.record_dir is None else str(Path(self.config.record_dir) / f"{trace.id}.jsonl")
        result = await asyncio.to_thread(self._play, ctx, endpoint, secret, data, record)
        if result.infra_error is not None:
            raise vf.SandboxError(f"execgym infra_error: {result.infra_error}")
        if result.agent_error is not None:
            raise vf.HarnessError(f"the model could not go on: {result.agent_error}")
        summary = dataclasses.asdict(result)
        summary.pop("trace", None)
        trace.info[INFO_KEY] = summary
        return vf.ProgramResult(exit_code=0, stdout="", stderr="")

    def _play(self, ctx: vf.ModelContext, endpoint: str, secret: str, data: ExecgymTaskData,
              record: str | None) -> EpisodeResult:
        from execgym.agents.openai_chat import OpenAIChatAgent

        # The run's model and sampling are verifiers' (its interception sets them on every request): the agent
        # leaves the completion budget to them and to the server.
        agent = OpenAIChatAgent(model=ctx.model, base_url=endpoint, api_key=secret, tool_mode=self.config.tool_mode,
                                max_tokens=None, seed=data.seed, max_retries=1)
        env = make_wrapped_env(data.env_id, data.env_kwargs, data.wrappers, record)
        try:
            options = {"task_id": data.id} if data.id is not None else None
            return run_episode(env, agent, seed=data.seed, options=options, act_timeout_s=None)
        finally:
            env.close()


def load_environment(env_id: str, *, num_tasks: int = 8, seed: int = 0, task_ids: list[str] | None = None,
                     wrappers: list[str] | None = None, tool_mode: Literal["native", "text"] = "native",
                     record_dir: str | None = None, **env_kwargs: Any) -> vf.Env:
    """A verifiers environment whose episodes are ``env_id``'s (``env_kwargs`` go to ``gym.make``).

    ``num_tasks`` episodes with seeds ``seed, seed+1, ...`` (or one per id of ``task_ids``); ``wrappers`` are
    reward wrapper specs; ``tool_mode`` and ``record_dir`` are the harness's (:class:`ExecgymHarnessConfig`).

    Its ``config`` is what verifiers' eval entry point (``EvalConfig(env=...)``) and trainers take.
    """
    taskset = ExecgymTasksetConfig(id=TASKSET_ID, env_id=env_id, env_kwargs=env_kwargs, wrappers=list(wrappers or []),
                                   num_tasks=num_tasks, seed=seed, task_ids=task_ids)
    # The harness runs in this process and the env keeps its own sandbox: verifiers' local runtime is enough.
    agent = vf.AgentConfig(harness=ExecgymHarnessConfig(tool_mode=tool_mode, record_dir=record_dir),
                           runtime=vf.SubprocessConfig())
    return vf.load_environment(vf.SingleAgentEnvConfig(taskset=taskset, agent=agent))
