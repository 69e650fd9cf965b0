"""Memory and cold start of N CAD envs (in one process, or in a vector env's subprocesses), printed as a markdown table.

    python benchmarks/cad_memory.py [--sizes 1,4,16] [--vector 1,4,16] [--process ''] [--sandboxed 1,4]
                                    [--unshared 1,4] [--steps 20]

For each N: N ``CADModelEnv`` (local executor) are built one after the other in this process; each one's cold
start is its construction + first ``reset`` + first ``run_cadquery`` step. Then the processes below this one
(sandboxes, workers, forks) are counted and their PSS summed from ``/proc/<pid>/smaps_rollup`` (this Python
process itself is left out: it is the trainer's); ``anon`` counts anonymous pages only (file pages of the
shared libraries move in and out of the page cache with the machine's memory pressure). ``forked`` is the
default (one agent fork server and one grader for all envs of the machine, in the CAD host daemon, each env's
worker forked with limits of its own); ``vector`` is the same default with the N envs in ``AsyncVectorEnv``
subprocesses, a subprocess each: the first env alone, then the N - 1 others in a second vector env at once
(their "later" figure is the time until all of them have stepped); its PSS counts the subprocesses too;
``process`` is ``share_workers="process"`` (the fork server and grader in this process, as before the host
daemon); ``sandboxed`` is ``fork_agent_workers=False`` (one grader, an agent worker in a sandbox of each env's own);
``unshared`` is ``share_workers=False`` (two CadQuery workers of each env's own). The warm step is the p50 of
``--steps`` runs of a typical bundled part on the last env.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

from execgym.envs.cad.env import CADModelEnv  # noqa: E402
from execgym.envs.cad.host import host_daemons  # noqa: E402
from execgym.rollout.bench import process_tree  # noqa: E402

TASK = "plate_holes-medium-1001"
BOX = "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1)\n"


def pss_bytes(pid: int, field: str = "Pss:") -> int:
    """One field of ``/proc/<pid>/smaps_rollup`` in bytes (``Pss:`` all pages, ``Pss_Anon:`` anonymous ones)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


MODES = {
    "forked": {},
    "process": {"share_workers": "process"},
    "sandboxed": {"fork_agent_workers": False},
    "unshared": {"share_workers": False},
}


def counted_pids() -> list[int]:
    """The processes below this one and the CAD host daemon's (which may have been started by another process)."""
    pids = dict.fromkeys(process_tree(os.getpid())[1:])
    for daemon in host_daemons():
        pids.update(dict.fromkeys(process_tree(daemon)))
    return list(pids)


def wait_for_no_daemon() -> None:
    """Each measure starts from a machine without a CAD host daemon (the last one stops ``LINGER_S`` after use)."""
    deadline = time.monotonic() + 60
    while host_daemons() and time.monotonic() < deadline:
        time.sleep(0.2)


def _vector_env(steps: int) -> CADModelEnv:
    return CADModelEnv(dataset="bundled", executor="local", max_turns=steps + 5)


def measure_vector(n: int, steps: int) -> dict[str, float]:
    """N envs in ``AsyncVectorEnv`` subprocesses, with the defaults: they share the host daemon.

    The first env comes alone (its cold start includes the daemon's); the other N - 1 then come in a second
    vector env, all at once: ``later`` is the time until every one of them has stepped, construction included.
    """
    import functools

    from gymnasium.vector import AsyncVectorEnv

    from execgym.envs.cad.tasks import bundled_tasks

    def start(count: int) -> tuple[AsyncVectorEnv, float]:
        begin = time.monotonic()
        vec = AsyncVectorEnv([functools.partial(_vector_env, steps)] * count, shared_memory=False)
        vec.reset(options={"task_id": TASK})
        obs, *_ = vec.step([{"name": "run_cadquery", "arguments": {"code": BOX}}] * count)
        assert all(o.startswith("OK") for o in obs), obs
        return vec, time.monotonic() - begin

    wait_for_no_daemon()
    vecs: list[AsyncVectorEnv] = []
    try:
        first, cold = start(1)
        vecs.append(first)
        later = float("nan")
        if n > 1:
            rest, later = start(n - 1)
            vecs.append(rest)
        time.sleep(1.0)
        pids = counted_pids()
        pss = sum(pss_bytes(p) for p in pids)
        anon = sum(pss_bytes(p, "Pss_Anon:") for p in pids)
        code = next(t.data["code"] for t in bundled_tasks() if t.id == TASK)
        warm = []
        for _ in range(steps):
            time.sleep(0.05)
            begin = time.monotonic()
            obs, *_ = first.step([{"name": "run_cadquery", "arguments": {"code": code}}])
            warm.append(time.monotonic() - begin)
            assert all(o.startswith("OK") for o in obs), obs
        return {"processes": len(pids), "pss": pss, "anon": anon, "first": cold, "later": later,
                "later_max": later, "warm": statistics.median(warm)}
    finally:
        for vec in vecs:
            vec.close()


def measure(n: int, mode: str, steps: int) -> dict[str, float]:
    if mode == "vector":
        return measure_vector(n, steps)
    wait_for_no_daemon()
    envs: list[CADModelEnv] = []
    cold: list[float] = []
    try:
        for _ in range(n):
            start = time.monotonic()
            env = CADModelEnv(dataset="bundled", executor="local", max_turns=steps + 5, **MODES[mode])
            envs.append(env)
            env.reset(options={"task_id": TASK})
            obs, *_ = env.step({"name": "run_cadquery", "arguments": {"code": BOX}})
            assert obs.startswith("OK"), obs
            cold.append(time.monotonic() - start)
        time.sleep(1.0)  # the workers fork their next spare children after a reply: count those too
        pids = counted_pids()
        pss = sum(pss_bytes(p) for p in pids)
        anon = sum(pss_bytes(p, "Pss_Anon:") for p in pids)
        code = envs[-1].task.data["code"]
        warm = []
        for _ in range(steps):
            time.sleep(0.05)  # an agent's turn: the worker forks its next child meanwhile
            start = time.monotonic()
            obs, *_ = envs[-1].step({"name": "run_cadquery", "arguments": {"code": code}})
            warm.append(time.monotonic() - start)
            assert obs.startswith("OK"), obs
        return {
            "processes": len(pids),
            "pss": pss,
            "anon": anon,
            "first": cold[0],
            "later": statistics.median(cold[1:]) if n > 1 else float("nan"),
            "later_max": max(cold[1:]) if n > 1 else float("nan"),
            "warm": statistics.median(warm),
        }
    finally:
        for env in envs:
            env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16", help="numbers of envs with the defaults (forked workers)")
    parser.add_argument("--vector", default="1,4,16", help="envs in an AsyncVectorEnv, a subprocess each ('' for none)")
    parser.add_argument("--process", default="", help="envs with share_workers='process' ('' for none)")
    parser.add_argument("--sandboxed", default="1,4", help="envs with fork_agent_workers=False ('' for none)")
    parser.add_argument("--unshared", default="1,4", help="numbers of envs with share_workers=False ('' for none)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    runs = [(int(n), "forked") for n in args.sizes.split(",") if n]
    runs += [(int(n), "vector") for n in args.vector.split(",") if n]
    runs += [(int(n), "process") for n in args.process.split(",") if n]
    runs += [(int(n), "sandboxed") for n in args.sandboxed.split(",") if n]
    runs += [(int(n), "unshared") for n in args.unshared.split(",") if n]
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} cores\n")
    print(
        "| workers | envs | processes | PSS total | PSS per env | anon PSS total | anon PSS per env "
        "| cold start, first env | later envs p50 (max) | warm step p50 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base: dict[str, dict[str, float]] = {}
    for n, mode in runs:
        r = measure(n, mode, args.steps)
        if n == 1:
            base[mode] = r

        def per_env(key: str, r: dict[str, float] = r, n: int = n, mode: str = mode) -> str:
            if n == 1 or mode not in base:
                return f"{r[key] / 2**20:,.0f} MiB (first)"
            return f"{(r[key] - base[mode][key]) / (n - 1) / 2**20:,.0f} MiB"

        later = f"{r['later']:.2f} s ({r['later_max']:.2f} s)" if n > 1 else "-"
        print(
            f"| {mode} | {n} | {r['processes']} | {r['pss'] / 2**20:,.0f} MiB "
            f"| {per_env('pss')} | {r['anon'] / 2**20:,.0f} MiB | {per_env('anon')} | {r['first']:.2f} s | {later} "
            f"| {r['warm'] * 1000:.0f} ms |",
            flush=True,
        )
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
