"""SWE repair env timings: reset (copy the repository, start the sandbox) and a full oracle episode.

Runs the bundled tasks with the local executor and, when Docker and the python image are available, with
the Docker executor and its warm pool. Prints markdown tables and the load average. Target: reset p50 <=
100 ms on both backends.

    python benchmarks/swe.py                       # both backends
    python benchmarks/swe.py --backends local --resets 50 --episodes 10

Columns: ``reset`` is ``env.reset()`` (the previous episode's sandbox handed back, the repository copied
into a new sandbox, the bug written in), timed after the Docker pool has refilled and the used containers
are removed, as between episodes that take seconds; ``back-to-back reset`` times resets with nothing in
between, so once the pool is empty a reset waits for a container start; ``reset + first command`` adds the
first ``bash`` step (the sandbox's supervisor or ``docker exec`` starts on first use); ``oracle episode`` is
reset + ``apply_patch`` (gold) + ``submit`` (grading in a fresh sandbox: file listing, carrying the
changes, the test run). For Docker a second table says where a reset's time goes, and the number of
execgym-labelled containers before the run and after the executor closed (no leak: equal).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator

from execgym.envs.swe.env import SWERepairEnv, default_limits
from execgym.executor import Executor, SandboxSpec, get_executor


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _settle(executor: Executor) -> None:
    """Between episodes: let the Docker pool refill and the used containers go (untimed)."""
    if hasattr(executor, "wait_removed"):
        executor.warm(SandboxSpec(image="python", limits=default_limits()))  # type: ignore[attr-defined]
        executor.wait_removed()  # type: ignore[attr-defined]


@contextlib.contextmanager
def _phases(executor: Executor) -> Iterator[dict[str, list[float]]]:
    """Time the parts of a Docker reset by wrapping the backend's methods (restored afterwards)."""
    times: dict[str, list[float]] = collections.defaultdict(list)
    if not hasattr(executor, "wait_removed"):
        yield times
        return
    from execgym.executor.docker import sandbox as backend

    targets = [
        (backend.DockerSandbox, "close", "hand back the previous sandbox"),
        (backend._Pool, "acquire", "take a pooled container"),
        (backend, "_initial_tar_cached", "repository tar (cached per repository state)"),
        (backend.DockerSandbox, "_load", "extract it through the pre-started loader"),
        (backend.DockerSandbox, "_put_tar", "put_archive (no loader: pool was empty)"),
        (backend, "_running", "liveness check (daemon inspect)"),
        (backend.DockerExecutor, "_create_slot", "start a container in the caller (pool was empty)"),
    ]
    saved = []
    main = threading.get_ident()

    def wrap(fn: Callable[..., object], key: str) -> Callable[..., object]:
        def timed(*args: object, **kwargs: object) -> object:
            if threading.get_ident() != main:  # the pool's own thread: not the reset's time
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[key].append(time.perf_counter() - start)

        return timed

    for owner, name, key in targets:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrap(getattr(owner, name), key))
    try:
        yield times
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def bench(executor: Executor, resets: int, episodes: int) -> dict[str, object]:
    env = SWERepairEnv(executor=executor)
    tasks = [t for t in env.tasks]
    for task in tasks:  # warm the per-task caches (buggy files, start manifests are made on first use)
        env.reset(options={"task_id": task.id})
    reset_times, first_command, back_to_back = [], [], []
    with _phases(executor) as phases:
        for i in range(resets):
            _settle(executor)  # untimed, and run on this thread outside the wrapped methods
            task = tasks[i % len(tasks)]
            reset_times.append(_timed(lambda task=task: env.reset(options={"task_id": task.id})))
        phase_times = {k: list(v) for k, v in phases.items()}
    for i in range(resets):
        task = tasks[(i + 3) % len(tasks)]
        back_to_back.append(_timed(lambda task=task: env.reset(options={"task_id": task.id})))
    for i in range(resets):
        _settle(executor)
        task = tasks[(i + 1) % len(tasks)]

        def reset_and_run(task=task) -> None:
            env.reset(options={"task_id": task.id})
            env.step({"name": "bash", "arguments": {"command": "true"}})

        first_command.append(_timed(reset_and_run))
    episode_times, solved = [], 0
    for i in range(episodes):
        task = tasks[(i * 7) % len(tasks)]

        def episode(task=task) -> None:
            nonlocal solved
            env.reset(options={"task_id": task.id})
            for action in task.oracle:
                out = env.step(action)
            solved += int(out[1] == 1.0)

        episode_times.append(_timed(episode))
    env.close()
    return {
        "reset_p50": statistics.median(reset_times),
        "reset_p90": _percentile(reset_times, 0.9),
        "b2b_p50": statistics.median(back_to_back),
        "b2b_p90": _percentile(back_to_back, 0.9),
        "phases": {k: (len(v), statistics.median(v), sum(v) / resets) for k, v in phase_times.items() if v},
        "first_p50": statistics.median(first_command),
        "episode_p50": statistics.median(episode_times),
        "episode_p90": _percentile(episode_times, 0.9),
        "solved": solved,
        "episodes": episodes,
        "resets": resets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="local,docker")
    parser.add_argument("--resets", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--pool-size", type=int, default=4)
    args = parser.parse_args()
    rows, breakdown, leaks = [], [], []
    load_before = os.getloadavg()
    for backend in args.backends.split(","):
        if backend == "docker":
            from execgym.executor.docker import DockerExecutor, docker_available, image_available

            ok, why = docker_available()
            if ok:
                ok, why = image_available("python")
            if not ok:
                rows.append(f"| docker | skipped: {why} | | | | |")
                continue
            from execgym.executor.docker import EXECUTOR_ID, LABEL

            docker_ex = DockerExecutor(pool_size=args.pool_size)
            executor: Executor = docker_ex
            labelled = {"label": f"{LABEL}=1"}
            count_before = len(docker_ex.client.containers.list(all=True, filters=labelled))
            docker_ex.warm(SandboxSpec(image="python", limits=default_limits()))
            label = f"docker (warm pool of {args.pool_size})"
        else:
            executor = get_executor(backend)
            label = backend
        r = bench(executor, args.resets, args.episodes)
        executor.close()
        if backend == "docker":
            mine = {"label": f"{EXECUTOR_ID}={docker_ex.id}"}
            left = len(docker_ex.client.containers.list(all=True, filters=mine))
            count_after = len(docker_ex.client.containers.list(all=True, filters=labelled))
            leaks.append(
                f"execgym-labelled containers: {count_before} before, {count_after} after close "
                f"({left} of this executor's left; removal errors: {len(docker_ex.removal_errors)})"
            )
            for key, (n, p50, per_reset) in r["phases"].items():  # type: ignore[union-attr]
                breakdown.append(f"| {key} | {n} | {p50 * 1000:.1f} ms | {per_reset * 1000:.1f} ms |")
        rows.append(
            f"| {label} | {r['reset_p50'] * 1000:.0f} ms | {r['reset_p90'] * 1000:.0f} ms | "
            f"{r['b2b_p50'] * 1000:.0f} ms (p90 {r['b2b_p90'] * 1000:.0f} ms) | "
            f"{r['first_p50'] * 1000:.0f} ms | {r['episode_p50']:.2f} s (p90 {r['episode_p90']:.2f} s) | "
            f"{r['solved']}/{r['episodes']} |"
        )
    load_after = os.getloadavg()
    print(
        "| backend | reset p50 | reset p90 | back-to-back reset p50 | reset + first command p50 "
        "| oracle episode p50 | oracle solved |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if breakdown:
        print(f"\nwhere a Docker reset's time goes ({args.resets} resets):\n")
        print("| part | calls | p50 per call | mean per reset |")
        print("|---|---|---|---|")
        print("\n".join(breakdown))
    print()
    for line in leaks:
        print(line)
    print(
        f"load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.1f}' for x in load_after)}; {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
