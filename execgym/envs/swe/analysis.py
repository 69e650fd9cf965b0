"""Host-side analysis of the agent's files, bounded: it runs in a child process with limits.

Parsing what the agent wrote (Python ASTs for the hack flags, TOML and INI for the test configuration,
literal extraction for hard-coded answers) costs time and memory that the agent controls: a small file can
nest deeply enough to exhaust the parser's recursion, or hold literals that take seconds to walk. So the
grader never parses agent files in its own process. :func:`run_analysis` runs
:func:`execgym.envs.swe.grading.analyse` in a fresh interpreter (``python -I -S``, the standard library
only) under a CPU-time limit, an address-space limit and a wall-clock timeout, after checking that the
input is under :data:`MAX_ANALYSIS_BYTES`. Anything that stops it from answering raises
:class:`AnalysisError`: the grader scores that as the agent's failure (a file it cannot analyse), never as
an infrastructure error. Only a failure to start the child process at all is the machine's.

Example:
    >>> job = {"before": {"m.py": "x = 1\\n"}, "after": {"m.py": "import atexit\\nx = 1\\n"}, "carried": ["m.py"]}
    >>> run_analysis(job)
    ['exit_in_library: m.py (import atexit)']
    >>> deep = {"before": {}, "after": {"m.py": "x = " + "-" * 100_000 + "1"}, "carried": ["m.py"]}
    >>> try:
    ...     run_analysis(deep)
    ... except AnalysisError:
    ...     print("refused")
    refused
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from execgym.core.errors import InfraError
from execgym.envs.swe import grading

__all__ = ["MAX_ANALYSIS_BYTES", "AnalysisError", "run_analysis"]

MAX_ANALYSIS_BYTES = 24 * 1024 * 1024
"""The most text (all files, before and after) one grading analyses."""
CPU_LIMIT_S = 30
WALL_LIMIT_S = 60.0
MEMORY_LIMIT_BYTES = 2 * 1024 * 1024 * 1024


class AnalysisError(Exception):
    """The agent's files could not be analysed within the limits (the agent's failure)."""


def _job_bytes(job: Mapping[str, Any]) -> int:
    total = 0
    for key in ("before", "after", "test_sources"):
        for text in (job.get(key) or {}).values():
            total += len(text) if isinstance(text, str) else 0
    return total


def _limit(cpu_s: int, memory: int) -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_analysis(
    job: Mapping[str, Any],
    *,
    cpu_s: int = CPU_LIMIT_S,
    wall_s: float = WALL_LIMIT_S,
    memory_bytes: int = MEMORY_LIMIT_BYTES,
    max_bytes: int = MAX_ANALYSIS_BYTES,
) -> list[str]:
    """The hack flags of :func:`~execgym.envs.swe.grading.analyse`, computed in a bounded child process."""
    size = _job_bytes(job)
    if size > max_bytes:
        raise AnalysisError(f"the changed files hold {size:,} characters, over the analysis limit of {max_bytes:,}")
    payload = json.dumps(job).encode()
    argv = [sys.executable, "-I", "-S", os.path.abspath(grading.__file__)]
    try:
        done = subprocess.run(
            argv,
            input=payload,
            capture_output=True,
            timeout=wall_s,
            preexec_fn=lambda: _limit(cpu_s, memory_bytes),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
        )
    except subprocess.TimeoutExpired:
        raise AnalysisError(f"analysing the changed files took over {wall_s:g} s") from None
    except OSError as exc:
        raise InfraError(f"cannot start the grader's analysis process: {exc}") from exc
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        if done.returncode < 0:
            last = [f"killed by signal {-done.returncode} (a time or memory limit)"]
        raise AnalysisError(f"the changed files could not be analysed: {last[0][:200]}")
    try:
        flags = json.loads(done.stdout)
    except ValueError:
        raise AnalysisError("the analysis process gave no answer") from None
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise AnalysisError("the analysis process gave a malformed answer")
    return flags
