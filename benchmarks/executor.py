"""Executor overheads, measured in one run and printed as a markdown table.

    python benchmarks/executor.py [--quick]

Ratios compare figures taken in the same run on the same machine (interleaved where it matters), so
they travel better than absolute times. Docker rows need a daemon and ``execgym images build python``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from execgym.executor import LocalExecutor, Sandbox, SandboxSpec, Session
from execgym.executor.docker import docker_available, image_available

WORKER = (
    "import json, sys, time\n"
    "for line in sys.stdin:\n"
    "    msg = json.loads(line)\n"
    "    if isinstance(msg, dict) and msg.get('sleep'):\n"
    "        time.sleep(1000)\n"
    "    print(json.dumps(msg), flush=True)\n"
)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def ms(x: float) -> str:
    return f"{x * 1000:.3f} ms" if x < 0.01 else f"{x * 1000:.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    n_run, n_sess, n_cold = (200, 300, 3) if args.quick else (1000, 2000, 7)
    n_kill = 3 if args.quick else 10
    rows: list[tuple[str, str, str, str]] = []  # metric, measured, target, verdict

    def row(metric: str, value: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((metric, value, target, "" if ok is None else ("yes" if ok else "NO")))

    # -- local -------------------------------------------------------------------------------------------
    ex = LocalExecutor()
    with ex.sandbox(SandboxSpec(files={"worker.py": WORKER})) as sb:
        for _ in range(50):
            sb.run(["true"])
            subprocess.run(["true"], capture_output=True)
        bare, ours = [], []
        for _ in range(n_run):  # interleaved, so drifts in machine load hit both alike
            bare.append(timed(lambda: subprocess.run(["true"], capture_output=True)))
            ours.append(timed(lambda: sb.run(["true"])))
        b50, o50 = statistics.median(bare), statistics.median(ours)
        row(
            'local `run(["true"])` p50 / bare `subprocess.run(["true"])` p50',
            f"{o50 / b50:.2f}x ({ms(o50)} vs {ms(b50)})",
            "<= 1.2x",
            o50 / b50 <= 1.2,
        )

        session = sb.session([sys.executable, "worker.py"])
        for i in range(100):
            session.request(i)
        rtt = [timed(lambda i=i: session.request({"i": i})) for i in range(n_sess)]
        row("local session round trip p50", ms(pct(rtt, 0.5)), "<= 1 ms", pct(rtt, 0.5) <= 0.001)
        row("local session round trip p99", ms(pct(rtt, 0.99)))
        _timeout_rows(row, sb, session, n_kill)
    create = [timed(lambda: ex.sandbox().close()) for _ in range(20)]
    row(
        "local sandbox create + first run + close p50",
        ms(statistics.median([timed(lambda: _create_run_close(ex)) for _ in range(20)])),
    )
    row("local sandbox create + close p50 (no command)", ms(statistics.median(create)))
    row("local isolation", ex.isolation)

    # -- docker ------------------------------------------------------------------------------------------
    ok, why = docker_available()
    if ok:
        ok, why = image_available("python")
    if not ok:
        row("docker rows", f"skipped: {why}")
    else:
        _docker_rows(row, n_sess // 4, n_cold)

    print("| metric | measured | target | met |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


TIMEOUT_S = 0.5


def _timeout_rows(row: Callable[..., None], sb: Sandbox, session: Session, n: int) -> None:
    """How long past its timeout a command (busy, sleeping, leaving a detached child) or a session request
    returns: the tests check only that it is killed and reported, these are the figures."""
    cmds = {
        "busy loop": ["python", "-c", "while True: pass"],
        "sleep": ["sleep", "1000"],
        "setsid child": ["python", "-c", "import os, time\nif os.fork() == 0: os.setsid()\ntime.sleep(1000)"],
    }
    for name, cmd in cmds.items():
        over = []
        for _ in range(n):
            t = time.perf_counter()
            r = sb.run(cmd, timeout=TIMEOUT_S)
            over.append(time.perf_counter() - t - TIMEOUT_S)
            assert r.timed_out, r
        worst = max(over)
        row(f"local run past its timeout ({name}): p50 / max overshoot", f"{ms(pct(over, 0.5))} / {ms(worst)}",
            "max <= 1 s", worst <= 1.0)  # fmt: skip
    over = []
    for _ in range(n):
        t = time.perf_counter()
        reply = session.request({"sleep": True}, timeout=TIMEOUT_S)
        over.append(time.perf_counter() - t - TIMEOUT_S)
        assert reply.timed_out, reply
    worst = max(over)
    row("local session request past its timeout: p50 / max overshoot (worker restarted)",
        f"{ms(pct(over, 0.5))} / {ms(worst)}", "max <= 3 s", worst <= 3.0)  # fmt: skip


def _create_run_close(ex: LocalExecutor) -> None:
    with ex.sandbox() as sb:
        sb.run(["true"])


def _docker_rows(row: Callable[..., None], n_sess: int, n_cold: int) -> None:
    from execgym.executor.docker import DEFAULT_IMAGES, DockerExecutor

    image = DEFAULT_IMAGES["python"]
    docker_run = [
        timed(lambda: subprocess.run(["docker", "run", "--rm", image, "true"], check=True, capture_output=True))
        for _ in range(n_cold)
    ]
    cold_ex = DockerExecutor(pool_size=0)
    cold = []
    for _ in range(n_cold):
        t = time.perf_counter()
        sb = cold_ex.sandbox()
        cold.append(time.perf_counter() - t)
        sb.close()
    c50, d50 = statistics.median(cold), statistics.median(docker_run)
    row(
        "docker cold sandbox start p50 / `docker run --rm IMAGE true` p50", f"{c50 / d50:.2f}x ({ms(c50)} vs {ms(d50)})"
    )

    warm_ex = DockerExecutor(pool_size=1)
    spec = SandboxSpec(files={"worker.py": WORKER})
    warm_ex.warm(spec)
    acquire = []
    for _ in range(n_cold):
        warm_ex.warm(spec)  # wait for the refill, as a steady stream of episodes would see
        t = time.perf_counter()
        sb = warm_ex.sandbox(SandboxSpec())
        acquire.append(time.perf_counter() - t)
        sb.close()
    a50 = statistics.median(acquire)
    row("docker warm-pool acquire p50 / cold start p50", f"{a50 / c50:.1%} ({ms(a50)})", "<= 10%", a50 / c50 <= 0.10)

    with warm_ex.sandbox(spec) as sb:
        runs = [timed(lambda: sb.run(["true"])) for _ in range(20)]
        row('docker `run(["true"])` p50 (one `docker exec`)', ms(statistics.median(runs)))
        session = sb.session(["python", "worker.py"])
        for i in range(50):
            session.request(i)
        rtt = [timed(lambda i=i: session.request({"i": i})) for i in range(n_sess)]
        row("docker session round trip p50", ms(pct(rtt, 0.5)), "<= 5 ms", pct(rtt, 0.5) <= 0.005)
        row("docker session round trip p99", ms(pct(rtt, 0.99)))
    warm_ex.close()
    cold_ex.close()


if __name__ == "__main__":
    sys.exit(main())
