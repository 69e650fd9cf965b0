"""Benchmarks of every env: reset and step latency, oracle throughput (1 and 2 processes), memory, overhead;
and a scaling table (1, 2, 4, 8 worker processes: episodes/s and memory).

One row per env:

- ``reset p50/p99``: ``env.reset`` over different seeds (ms);
- ``step p50/p99``: the env's typical tool call (SQL: ``execute_sql`` of the gold query; tool use: the
  oracle's first call; SWE: ``bash ls``; CAD: ``run_cadquery`` of the reference program) (ms);
- ``oracle eps/s``: oracle episodes per second in this process, over a time window after a warm-up;
- ``1w/2w eps/s``, ``2w/1w``: oracle episodes/s of one and of two worker processes playing for a fixed
  time window, and their ratio (ideal 2.0; only as good as the cores that are free);
- ``MB/env``: resident memory each further idle env instance adds (after a reset) in its own process (the
  CAD env's two CadQuery workers are processes of their own and are not counted);
- ``overhead p50/p99``: a step calling a no-op tool: everything the framework does around a tool (parsing,
  dispatch, bookkeeping, ``info``, Gymnasium's wrappers) (ms).

The scaling table (``execgym bench --scaling [--workers 1,2,4,8] [--seconds S] [--env ...]``), to size a
machine: for each env and each worker count N, N fresh worker processes, each with its own env instance,
warm up together (one oracle episode of every bundled task, for at most 30 s, then more for up to 2 s, and
while a CAD grader pool grows), then play oracle episodes for the same window (``--seconds``; heavy envs:
x4). A CAD row first waits for the previous row's host daemon to exit, so each row starts its own. One row
per N:

- ``eps/s``: the N workers' oracle episodes per second together;
- ``speedup``: eps/s over the 1-worker row's (ideal N; only as good as the cores that are free);
- ``MB total``: memory of the N workers' whole process trees (each worker and every process under it:
  sandbox supervisors, the commands they run, CAD fork servers and workers, and the CAD host daemon), the
  sum of each process's PSS from ``/proc/<pid>/smaps_rollup`` (RSS from ``statm`` where that cannot be
  read; the machine line says how many), the largest of three readings spread over the window and one
  after it (envs still open);
- ``MB/worker``: ``MB total`` / N; ``MB marginal``: what each worker beyond the previous row's count added
  (``(MB total - previous MB total) / (N - previous N)``); ``processes``: how many processes were read;
- ``load 1m``: the 1-minute load average when the row started.

Under the table, the machine line: CPU, usable and total cores, the load average at start and at end. Docker
containers are not processes of the workers, so ``--executor docker`` counts only the workers' own side.

Example:
    >>> row = bench_env("execgym/TextToSQL-v0", samples=3, workers=False, seconds=0.2)
    >>> sorted(row)[:4]
    ['env_id', 'mb_per_env', 'oracle_eps_per_s', 'overhead_p50_ms']
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "TreeMemory",
    "WorkerRun",
    "bench_env",
    "format_bench_table",
    "format_scaling_table",
    "machine_description",
    "process_memory",
    "process_tree",
    "run_bench",
    "run_scaling",
    "run_workers",
    "scaling",
    "tree_memory",
]

HEAVY = {"execgym/CADModel-v0", "execgym/SWERepair-v0"}
SETTLE_S = 120.0  # the longest a worker's warm-up waits for a CAD grader pool that is still growing
WARMUP_S = 2.0  # the workers' joint warm-up before a throughput window, after one episode each
COVER_S = 30.0  # the longest a worker's warm-up spends playing each bundled task once
HOST_EXIT_S = 15.0  # the longest a CAD scaling row waits for the host daemon of the previous row to exit


def _percentiles(times_s: Sequence[float]) -> tuple[float, float]:
    ms = np.asarray(times_s, dtype=float) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _make(env_id: str, env_kwargs: dict[str, Any] | None = None, **extra: Any) -> gym.Env[Any, Any]:
    import execgym  # noqa: F401  (registers the env ids, also in worker processes)

    return gym.make(env_id, **{**(env_kwargs or {}), **extra})


def typical_call(env_id: str, env: gym.Env[Any, Any]) -> Any:
    """The tool call a benchmark times as the env's typical step (after ``reset``)."""
    task = env.unwrapped.task  # type: ignore[attr-defined]
    first = task.oracle[0] if task.oracle else None
    if env_id.startswith("execgym/TextToSQL"):
        query = next(a["arguments"]["query"] for a in task.oracle if isinstance(a, dict))
        return {"name": "execute_sql", "arguments": {"query": query}}
    if env_id.startswith("execgym/SWERepair"):
        return {"name": "bash", "arguments": {"command": "ls"}}
    if env_id.startswith("execgym/CADModel"):
        return {"name": "run_cadquery", "arguments": {"code": task.oracle[-1]["arguments"]["code"]}}
    return first


def _noop() -> str:
    """Do nothing (the benchmark's no-op tool)."""
    return "ok"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory_worker(env_id: str, env_kwargs: dict[str, Any], count: int, conn: Any) -> None:
    envs = [_make(env_id, env_kwargs)]
    envs[0].reset(seed=0)  # the first instance pays for imports and shared caches
    before = _rss_bytes()
    for i in range(count):
        env = _make(env_id, env_kwargs)
        env.reset(seed=i + 1)
        envs.append(env)
    conn.send((_rss_bytes() - before) / count)
    for env in envs:
        env.close()


def memory_per_env(env_id: str, env_kwargs: dict[str, Any] | None = None, count: int = 3) -> float:
    """MB of resident memory each further idle env instance adds, measured in a fresh process."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_memory_worker, args=(env_id, env_kwargs or {}, count, child))
    proc.start()
    value = parent.recv()
    proc.join()
    return float(value) / 2**20


def _oracle_episode(env: gym.Env[Any, Any], agent: Any, what: str, **reset: Any) -> None:
    """One oracle episode (``reset``: run_episode's seed or options); raises unless it earns full reward."""
    from execgym.rollout.episode import run_episode

    # The oracle is this package's own code and cannot hang: no act timeout, so no hand-off to an agent thread
    # per turn, whose wake-up of an idle core cost a lone worker more than half of a sub-millisecond episode on
    # a 2-core VM (and made 2 workers look 4x faster than one).
    result = run_episode(env, agent, act_timeout_s=None, **reset)
    if result.outcome < 1.0:
        raise RuntimeError(f"the oracle failed {env.spec.id if env.spec else env} {what}: {result}")


def _oracle_episodes(env: gym.Env[Any, Any], episodes: int, seed: int) -> None:
    from execgym.agents import OracleAgent

    agent = OracleAgent(env)
    for i in range(episodes):
        _oracle_episode(env, agent, f"seed {seed + i}", seed=seed + i)


def _cover_tasks(env: gym.Env[Any, Any], seed: int, budget_s: float = COVER_S) -> int:
    """Play one oracle episode of every bundled task (for at most ``budget_s``); returns how many were played.

    A task's first episode can cost more than its later ones (a CAD reference is built once per grader, a
    database's digest is read once): the window then measures the steady state of a long run whichever tasks
    its seeds draw. Each worker starts at another task (``seed``), as workers of a real run do.
    """
    from execgym.agents import OracleAgent
    from execgym.core.report import TASK_ID

    bundled = getattr(env.unwrapped, "bundled_tasks", None)
    tasks = [t.id for t in bundled()] if callable(bundled) else []
    if not tasks:
        return 0
    start = seed % len(tasks)
    agent = OracleAgent(env)
    t0 = time.perf_counter()
    played = 0
    for task_id in tasks[start:] + tasks[:start]:
        if time.perf_counter() - t0 >= budget_s:
            break
        _oracle_episode(env, agent, f"task {task_id}", options={TASK_ID: task_id})
        played += 1
    return played


def _growing(env: gym.Env[Any, Any], t0: float) -> bool:
    """Whether the env's shared CAD grader pool is still starting a grader (for at most ``SETTLE_S``).

    The pool grows while every grader is busy: the first seconds of parallel workers start one more grader,
    whose CadQuery import would otherwise fall in the window that measures the steady state.
    """
    status = getattr(getattr(env.unwrapped, "grader", None), "pool_status", None)
    return callable(status) and time.perf_counter() - t0 < SETTLE_S and bool(status()["starting"])


def _throughput_worker(env_id: str, env_kwargs: dict[str, Any], seconds: float, seed: int, conn: Any) -> None:
    """Play one episode and say "ready"; on "warm", warm up with the other workers (every bundled task once, see
    :func:`_cover_tasks`, then up to ``min(seconds, WARMUP_S)``, longer while a CAD grader pool grows) and say
    "warm"; on "go", play for ``seconds``, report episodes/s, hold the env open until "close".

    The warm-up starts in every worker at once, so that it meets the contention the window will (a CAD grader
    pool grows only while all its graders are busy). Holding the env open after the window keeps its processes
    (sandbox supervisors, CAD workers) alive while the parent reads their memory. A failure is sent as
    ``("error", text)``; a worker that dies is an ``EOFError`` on the parent's end, so the parent never waits
    for a worker that is gone.
    """
    import traceback

    env = None
    try:
        env = _make(env_id, env_kwargs)
        # Warm (imports, workers, each task's first-visit caches) on the seeds the window starts with: the
        # window measures the steady state a long rollout runs in, not a fresh process's first episodes.
        _oracle_episodes(env, 1, seed)
        conn.send(("ready", None))
        if conn.recv() != "warm":
            return
        _cover_tasks(env, seed // 1000)
        t0 = time.perf_counter()
        warmed = 1
        while time.perf_counter() - t0 < min(seconds, WARMUP_S) or _growing(env, t0):
            _oracle_episodes(env, 1, seed + warmed)
            warmed += 1
        conn.send(("warm", None))
        if conn.recv() != "go":
            return
        t0 = time.perf_counter()
        done = 0
        while time.perf_counter() - t0 < seconds:
            _oracle_episodes(env, 1, seed + done)
            done += 1
        conn.send(("ok", done / (time.perf_counter() - t0)))
        conn.recv()  # the parent has read the memory of our process tree
    except EOFError:
        pass  # the parent is gone
    except BaseException as exc:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        if env is not None:
            env.close()


def _collect(env_id: str, pipes: Sequence[Any], expected: str, timeout: float) -> list[Any]:
    """One ``(expected, value)`` message from each worker, in order; RuntimeError on any failure or timeout."""
    from multiprocessing.connection import wait

    replies: dict[int, Any] = {}
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    pending = list(range(len(pipes)))
    while pending and not errors:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"{env_id}: {len(pending)} of {len(pipes)} workers sent no {expected!r} "
                               f"within {timeout:.0f} s")
        for pipe in wait([pipes[i] for i in pending], timeout=left):
            i = next(i for i in pending if pipes[i] is pipe)
            pending.remove(i)
            try:
                status, value = pipe.recv()
            except EOFError:
                status, value = "error", "the worker process died"
            if status == expected:
                replies[i] = value
            else:
                errors.append(f"worker {i}: {value}")
    if errors:
        raise RuntimeError(f"{env_id}: a worker failed:\n" + "\n".join(errors))
    return [replies[i] for i in range(len(pipes))]


@dataclass(frozen=True)
class TreeMemory:
    """Memory of a set of process trees at one moment.

    ``bytes`` is the sum of each process's proportional set size (PSS: private pages plus its share of the
    pages it shares with others), or of its resident set size where ``/proc/<pid>/smaps_rollup`` cannot be read
    (``rss_fallbacks`` counts those); ``processes`` counts every process read.
    """

    bytes: int
    processes: int
    rss_fallbacks: int

    @property
    def mb(self) -> float:
        return self.bytes / 2**20


def _proc_children() -> dict[int, list[int]]:
    """Every live process's children, from the parent pid in ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    return children


def process_tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """``root`` and all its live descendants (children, their children, ...), ``root`` first.

    >>> process_tree(os.getpid())[0] == os.getpid()
    True
    """
    children = _proc_children() if children is None else children
    tree, todo, seen = [], [root], set()
    while todo:
        pid = todo.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def process_memory(pid: int) -> tuple[int, bool] | None:
    """``(bytes, is_pss)`` of one process: PSS from ``smaps_rollup``, else RSS from ``statm``; None when gone.

    >>> size, is_pss = process_memory(os.getpid())
    >>> size > 0
    True
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024, True
        return 0, True  # a zombie or a kernel thread: no memory of its own
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            return None
    except (PermissionError, ProcessLookupError, OSError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"), False
    except (OSError, IndexError, ValueError):
        return None


def tree_memory(roots: Sequence[int]) -> TreeMemory:
    """The memory of the process trees under ``roots`` (each process counted once; see :class:`TreeMemory`).

    >>> mem = tree_memory([os.getpid()])
    >>> mem.processes >= 1 and mem.bytes > 0
    True
    """
    children = _proc_children()
    pids = dict.fromkeys(pid for root in roots for pid in process_tree(root, children))
    total = processes = fallbacks = 0
    for pid in pids:
        measured = process_memory(pid)
        if measured is None:
            continue
        total += measured[0]
        processes += 1
        fallbacks += not measured[1]
    return TreeMemory(total, processes, fallbacks)


@dataclass(frozen=True)
class WorkerRun:
    """What :func:`run_workers` measured: the workers' episodes/s together and their trees' memory.

    ``memory`` is the largest of the samples taken during the window and once after it (None when not measured).
    """

    workers: int
    eps_per_s: float
    memory: TreeMemory | None


def run_workers(
    env_id: str,
    workers: int,
    seconds: float = 3.0,
    env_kwargs: dict[str, Any] | None = None,
    *,
    memory_samples: int = 0,
    start_timeout: float = 900.0,
) -> WorkerRun:
    """Start ``workers`` processes, each with its own env, that play oracle episodes for ``seconds`` at once.

    Each worker plays one oracle episode, then all warm up together (for ``min(seconds, WARMUP_S)``, longer
    while a CAD grader pool is still growing) before the common window starts. With ``memory_samples`` > 0 the
    memory of all the workers' process trees is read that many times, evenly spread over the window, and
    once more after it while the envs are still open; the largest total is kept. A failing worker raises
    ``RuntimeError`` with its traceback.

    >>> run = run_workers("execgym/ToolUse-v0", 1, seconds=0.2, memory_samples=1)
    >>> run.eps_per_s > 0 and run.memory.bytes > 0 and run.memory.processes >= 1
    True
    """
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    try:
        for w in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_throughput_worker,
                               args=(env_id, env_kwargs or {}, seconds, 1000 * w, child), daemon=True)
            proc.start()
            child.close()  # so that a dead worker is an EOFError here, not a hang
            pipes.append(parent)
            procs.append(proc)
        _collect(env_id, pipes, "ready", start_timeout)
        for pipe in pipes:
            pipe.send("warm")
        _collect(env_id, pipes, "warm", start_timeout)
        for pipe in pipes:
            pipe.send("go")
        t0 = time.perf_counter()
        samples: list[TreeMemory] = []
        pids = [p.pid for p in procs if p.pid is not None]
        if "CAD" in env_id:  # the machine's CAD host daemon serves them, whichever process started it
            from execgym.envs.cad.host import host_daemons

            pids += host_daemons()
        for k in range(1, memory_samples + 1):
            time.sleep(max(0.0, t0 + seconds * k / (memory_samples + 1) - time.perf_counter()))
            samples.append(tree_memory(pids))
        rates = _collect(env_id, pipes, "ok", seconds + start_timeout)
        if memory_samples:
            samples.append(tree_memory(pids))
        peak = max(samples, key=lambda m: m.bytes) if samples else None
        return WorkerRun(workers, float(sum(rates)), peak)
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send("close")
        for proc in procs:
            proc.join(timeout=seconds + 120)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
        for pipe in pipes:
            pipe.close()


def throughput(env_id: str, workers: int, seconds: float = 3.0, env_kwargs: dict[str, Any] | None = None) -> float:
    """Oracle episodes per second of ``workers`` processes together, each playing for about ``seconds``."""
    return run_workers(env_id, workers, seconds, env_kwargs).eps_per_s


def bench_env(
    env_id: str,
    *,
    samples: int = 30,
    env_kwargs: dict[str, Any] | None = None,
    workers: bool = True,
    seconds: float = 3.0,
) -> dict[str, Any]:
    """Measure one env (see the module's docstring for each figure)."""
    from execgym.core.tools import Tool

    heavy = env_id in HEAVY
    n = max(2, samples // 4) if heavy else samples
    row: dict[str, Any] = {"env_id": env_id}
    env = _make(env_id, env_kwargs, max_turns=100_000)
    try:
        env.reset(seed=0)  # warm
        resets = []
        for i in range(n):
            t0 = time.perf_counter()
            env.reset(seed=i + 1)
            resets.append(time.perf_counter() - t0)
        row["reset_p50_ms"], row["reset_p99_ms"] = _percentiles(resets)
        steps, overhead = [], []
        env.reset(seed=0)
        call = typical_call(env_id, env)
        unwrapped = env.unwrapped
        noop = Tool.from_function(_noop, name="noop")
        for _ in range(n):
            t0 = time.perf_counter()
            env.step(call)
            steps.append(time.perf_counter() - t0)
        # a copy with the no-op added: the env's own dict is its per-task tool cache, shared with later episodes
        unwrapped._tools_by_name = {**unwrapped._tools_by_name, "noop": noop}  # type: ignore[attr-defined]
        for _ in range(max(n, 50)):
            t0 = time.perf_counter()
            env.step({"name": "noop", "arguments": {}})
            overhead.append(time.perf_counter() - t0)
        row["step_p50_ms"], row["step_p99_ms"] = _percentiles(steps)
        row["overhead_p50_ms"], row["overhead_p99_ms"] = _percentiles(overhead)
    finally:
        env.close()
    window = 4 * seconds if heavy else seconds
    env = _make(env_id, env_kwargs)
    try:
        _oracle_episodes(env, 1, 0)  # warm
        t0 = time.perf_counter()
        done = 0
        while time.perf_counter() - t0 < window:
            _oracle_episodes(env, 1, done)
            done += 1
        row["oracle_eps_per_s"] = done / (time.perf_counter() - t0)
    finally:
        env.close()
    if workers:
        one = throughput(env_id, 1, window, env_kwargs)
        two = throughput(env_id, 2, window, env_kwargs)
        row["eps_per_s_1w"], row["eps_per_s_2w"], row["ratio_2w_1w"] = one, two, two / one
    row["mb_per_env"] = memory_per_env(env_id, env_kwargs)
    return row


def machine_description() -> dict[str, Any]:
    """The machine the figures were measured on (CPU, cores, memory, load, Python, platform)."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": mem,
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def format_bench_table(rows: Sequence[dict[str, Any]]) -> str:
    """The benchmark rows as one plain-text table."""
    head = (f"{'env':<16} {'reset p50/p99 ms':>17} {'step p50/p99 ms':>17} {'oracle eps/s':>12} "
            f"{'1w eps/s':>9} {'2w eps/s':>9} {'2w/1w':>6} {'MB/env':>7} {'overhead p50/p99 ms':>20}")
    lines = [head, "-" * len(head)]

    def num(row: dict[str, Any], key: str, fmt: str = ".2f") -> str:
        return format(row[key], fmt) if key in row else "-"

    for r in rows:
        lines.append(
            f"{r['env_id'].removeprefix('execgym/'):<16} "
            f"{num(r, 'reset_p50_ms', '.2f') + '/' + num(r, 'reset_p99_ms', '.2f'):>17} "
            f"{num(r, 'step_p50_ms', '.2f') + '/' + num(r, 'step_p99_ms', '.2f'):>17} "
            f"{num(r, 'oracle_eps_per_s', '.1f'):>12} {num(r, 'eps_per_s_1w', '.1f'):>9} "
            f"{num(r, 'eps_per_s_2w', '.1f'):>9} {num(r, 'ratio_2w_1w'):>6} {num(r, 'mb_per_env', '.1f'):>7} "
            f"{num(r, 'overhead_p50_ms', '.3f') + '/' + num(r, 'overhead_p99_ms', '.3f'):>20}"
        )
    return "\n".join(lines)


def run_bench(
    env_ids: Sequence[str] | None = None,
    *,
    samples: int = 30,
    executor: str | None = None,
    workers: bool = True,
    seconds: float = 3.0,
    out: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Benchmark ``env_ids`` (default: every registered env); write JSON to ``out`` when given."""
    import execgym

    ids = list(env_ids) if env_ids else execgym.registered_envs()
    report: dict[str, Any] = {"machine": machine_description(), "executor": executor or "local", "rows": []}
    for env_id in ids:
        kwargs = {"executor": executor} if executor and env_id in HEAVY else {}
        if log:
            log(f"benchmarking {env_id} ...")
        report["rows"].append(bench_env(env_id, samples=samples, env_kwargs=kwargs,
                                        workers=workers, seconds=seconds))
    report["machine"]["load_average_after"] = list(os.getloadavg())
    report["median_overhead_p50_ms"] = statistics.median(r["overhead_p50_ms"] for r in report["rows"]) if ids else None
    if out:
        with open(out, "w") as fh:
            json.dump(report, fh, indent=2)
    return report


SCALING_WORKERS = (1, 2, 4, 8)


def _await_host_exit(timeout_s: float = HOST_EXIT_S, pids: Sequence[int] | None = None) -> bool:
    """Wait (at most ``timeout_s``) until the CAD host daemons ``pids`` (default: those of this user running
    now) have exited; True once they have.

    A daemon outlives its last env by a moment, with the graders the previous row grew and the references
    they built: a row that found it would measure another pool (and count its memory) than a row that starts
    one. Each row starts its own, so rows compare like with like in whatever order they run. The process is
    watched, not its pid file: a stopping daemon removes the file first, then shuts its workers down.
    """
    from execgym.envs.cad.host import host_daemons

    waiting = list(host_daemons() if pids is None else pids)
    deadline = time.monotonic() + timeout_s
    while any(_running(pid) for pid in waiting):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def scaling(
    env_id: str,
    workers: Sequence[int] = SCALING_WORKERS,
    *,
    seconds: float = 3.0,
    env_kwargs: dict[str, Any] | None = None,
    memory_samples: int = 3,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per worker count: episodes/s, speedup over 1 worker, memory (see the module's docstring).

    Each count is a fresh set of worker processes (:func:`run_workers`), played for ``seconds`` (heavy envs:
    four times as long).

    >>> rows = scaling("execgym/ToolUse-v0", (1, 2), seconds=0.2, memory_samples=1)
    >>> [r["workers"] for r in rows], rows[0]["speedup"], rows[0]["marginal_mb"], rows[1]["mb_per_worker"] > 0
    ([1, 2], 1.0, None, True)
    """
    counts = sorted(set(workers))
    if not counts or counts[0] < 1:
        raise ValueError(f"worker counts must be positive, got {list(workers)}")
    window = 4 * seconds if env_id in HEAVY else seconds
    rows: list[dict[str, Any]] = []
    for n in counts:
        if log:
            log(f"  {env_id}: {n} worker{'s' if n > 1 else ''} ...")
        if "CAD" in env_id:
            _await_host_exit()
        load = os.getloadavg()[0]
        run = run_workers(env_id, n, window, env_kwargs, memory_samples=max(1, memory_samples))
        assert run.memory is not None
        rows.append({
            "env_id": env_id, "workers": n, "eps_per_s": run.eps_per_s, "memory_mb": run.memory.mb,
            "mb_per_worker": run.memory.mb / n, "processes": run.memory.processes,
            "rss_fallbacks": run.memory.rss_fallbacks, "window_s": window, "load_1m_start": load,
        })
    one = rows[0]["eps_per_s"] if counts[0] == 1 else None
    for i, row in enumerate(rows):
        row["speedup"] = row["eps_per_s"] / one if one else None
        prev = rows[i - 1] if i else None
        row["marginal_mb"] = ((row["memory_mb"] - prev["memory_mb"]) / (row["workers"] - prev["workers"])
                              if prev else None)
    return rows


def format_scaling_table(report: dict[str, Any]) -> str:
    """A :func:`run_scaling` report as one plain-text table and the machine line under it.

    >>> row = {"env_id": "execgym/ToolUse-v0", "workers": 1, "eps_per_s": 1500.0, "speedup": 1.0,
    ...        "memory_mb": 60.0, "mb_per_worker": 60.0, "marginal_mb": None, "processes": 1, "load_1m_start": 0.5}
    >>> machine = {"cpu": "cpu", "cores": 2, "usable_cores": 2, "load_average": [0.5, 0.4, 0.3],
    ...            "load_average_after": [0.6, 0.4, 0.3]}
    >>> print(format_scaling_table({"rows": [row], "machine": machine, "executor": "local"}))  # doctest: +ELLIPSIS
    env              workers    eps/s  speedup  MB total  MB/worker  MB marginal  processes  load 1m
    ...
    ToolUse-v0             1   1500.0     1.00      60.0       60.0            -          1     0.50
    <BLANKLINE>
    cpu · 2 usable of 2 cores · load average 0.50 0.40 0.30 at start, 0.60 0.40 0.30 at end · executor local
    """
    head = (f"{'env':<16} {'workers':>7} {'eps/s':>8} {'speedup':>8} {'MB total':>9} {'MB/worker':>10} "
            f"{'MB marginal':>12} {'processes':>10} {'load 1m':>8}")
    lines = [head, "-" * len(head)]

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for r in report["rows"]:
        lines.append(
            f"{r['env_id'].removeprefix('execgym/'):<16} {r['workers']:>7} {num(r['eps_per_s'], '.1f'):>8} "
            f"{num(r['speedup'], '.2f'):>8} {num(r['memory_mb'], '.1f'):>9} {num(r['mb_per_worker'], '.1f'):>10} "
            f"{num(r['marginal_mb'], '.1f'):>12} {r['processes']:>10} {num(r['load_1m_start'], '.2f'):>8}"
        )
    m = report["machine"]
    fallbacks = sum(r.get("rss_fallbacks", 0) for r in report["rows"])

    def loads(key: str) -> str:
        return " ".join(f"{x:.2f}" for x in m.get(key) or ())

    lines += ["", f"{m['cpu']} · {m['usable_cores']} usable of {m['cores']} cores · load average "
                  f"{loads('load_average')} at start, {loads('load_average_after')} at end · executor "
                  f"{report['executor']}" + (f" · {fallbacks} process readings were RSS, not PSS" if fallbacks else "")]
    return "\n".join(lines)


def run_scaling(
    env_ids: Sequence[str] | None = None,
    *,
    workers: Sequence[int] = SCALING_WORKERS,
    seconds: float = 3.0,
    executor: str | None = None,
    memory_samples: int = 3,
    out: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The scaling table of ``env_ids`` (default: every registered env); write JSON to ``out`` when given."""
    import execgym

    ids = list(env_ids) if env_ids else execgym.registered_envs()
    report: dict[str, Any] = {"machine": machine_description(), "executor": executor or "local",
                              "workers": sorted(set(workers)), "seconds": seconds,
                              "memory_samples": memory_samples, "rows": []}
    for env_id in ids:
        kwargs = {"executor": executor} if executor and env_id in HEAVY else {}
        if log:
            log(f"scaling {env_id} ...")
        report["rows"].extend(scaling(env_id, workers, seconds=seconds, env_kwargs=kwargs,
                                      memory_samples=memory_samples, log=log))
    report["machine"]["load_average_after"] = list(os.getloadavg())
    if out:
        with open(out, "w") as fh:
            json.dump(report, fh, indent=2)
    return report
