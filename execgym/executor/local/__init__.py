"""The embedded default backend: a private temp directory per sandbox, no daemon.

Each sandbox gets one supervisor process (:mod:`execgym.executor._agent` in ``serve`` mode) started on
first use. The host sends it spawn requests with the command's stdio pipes attached (SCM_RIGHTS); it
``posix_spawn`` s the command in a new session, so a ``run`` costs about what a bare
``subprocess.run`` does. The host reads the pipes itself, capping each stream at
``Limits.output_bytes`` while draining (nothing beyond the cap is kept), and on timeout asks the
supervisor to kill the command's process group and every orphan it left.

What is enforced, and how:

* **Always**: environment scrubbed (only ``PATH``, ``HOME`` = work dir, ``LANG``/``LC_ALL``,
  ``TMPDIR``, ``PYTHONDONTWRITEBYTECODE``, ``PYTHONUNBUFFERED``, single-threaded BLAS/OpenMP, the spec's
  ``env`` and ``pass_env``); wall-time timeout killing the whole process group and orphans; output
  caps; RLIMIT_AS (memory), RLIMIT_CPU (per process, ``run`` commands only), RLIMIT_FSIZE (largest
  file = ``disk_bytes``), RLIMIT_CORE = 0; ``write_files``/``read_file`` refuse absolute paths, ``..``
  and symlinks that resolve outside the work directory (resolved component by component with
  ``O_NOFOLLOW``, so a symlink swapped in concurrently cannot redirect them).
* **With bubblewrap** (``bwrap`` installed and able to build the sandbox; probed once, with the real
  configuration): only what a sandbox needs is mounted, read-only: ``/usr`` (and the merged-``/usr`` links),
  an allowlist of ``/etc`` (loader cache, alternatives, name resolution, TLS roots, time zone; ``passwd``
  and ``group`` generated per sandbox), the interpreter's prefixes and ``sys.path`` minus execgym's checkout
  (an editable install's source, its ``.git`` and ``execgym/assets`` stay out; a package installed inside
  a bound directory is masked), minus the calling script's folder and any entry that is or holds ``/tmp``,
  ``/dev``, ``/proc``, ``/etc`` or the work dir. Read-write: the work dir, a private ``/tmp`` and
  ``/dev/shm``. Also a minimal ``/dev``, its own ``/proc`` (``/proc/sys`` read-only) and PID namespace
  (the supervisor is PID 1, so ``close()`` or a crash of the host takes every process down with it), no
  network unless ``Limits.network`` (``--unshare-net``: only a private loopback; with the network on, the
  host's network namespace is shared, abstract Unix sockets included). No ``/root``, ``/home``, ``/run``, ``/var``,
  ``/sys`` nor any host socket exists inside.
* **A sandbox's own interpreter** (``SandboxSpec.python``, e.g. a venv's ``bin/python``): its ``bin`` folder
  leads ``PATH``, so ``python`` (and the venv's console scripts) are the venv's. With bubblewrap the venv and
  its base interpreter are bound read-only (writing into the venv fails: ``pip install`` cannot change it),
  and the site-packages of the executor's interpreter and of the venv's base are masked with an empty
  folder unless the venv's ``sys.path`` holds them (``--system-site-packages``): the host's packages are
  neither importable nor readable there. The supervisor still runs on the executor's interpreter
  (``-I -S``, standard library only). The interpreter is probed once per process and path, not per
  sandbox; a missing one is an :class:`InfraError` when the sandbox is made. Without bubblewrap only
  ``PATH`` changes: the venv is as writable as the calling user makes it.
* **Identity**: as root, bubblewrap builds the sandbox (it can then bind an interpreter under a private
  home) and the supervisor drops to :data:`SANDBOX_UID`/:data:`SANDBOX_GID` before anything else runs: no
  supplementary groups, empty capability bounding set, ``no_new_privs`` (see ``_agent.drop_privileges``).
  The work dir and the commands' stdio pipes are given to that uid. As a normal user bwrap creates a user
  namespace and commands run as that user, in which RLIMIT_NPROC counts only the sandbox's own processes.
* **Control channel**: the socket to the supervisor is reachable from no command: the supervisor marks
  every descriptor it holds close-on-exec, receives the stdio pipes close-on-exec, closes the socket again
  in each ``posix_spawn`` and is not dumpable (commands of the same uid cannot ptrace it or open
  ``/proc/1/fd``); as PID 1 of the sandbox it gets only the signals it handles (SIGCHLD). The host checks
  every message (JSON object, known op, a job it is waiting for, field types); a malformed or unexpected
  one kills the supervisor (and every command with it) and raises :class:`InfraError`.
* **Process limit**: RLIMIT_NPROC, which the kernel ignores for root; as root the supervisor is placed in its
  own ``pids`` cgroup (v1, or v2 where the cgroup tree is writable) with ``pids.max`` = ``max_processes``.
* **Memory**: as root, a ``memory`` cgroup per sandbox (v1 ``memory.limit_in_bytes`` and ``memsw``, or v2
  ``memory.max`` and ``memory.swap.max=0``) caps all of its processes together; elsewhere the limit is
  RLIMIT_AS, per process. :attr:`LocalSandbox.memory_scope` says which holds.
* **Without bubblewrap** :class:`LocalExecutor` refuses to make sandboxes unless asked explicitly
  (``use_bwrap=False`` or ``$EXECGYM_LOCAL_UNCONFINED=1``); then only the list under *Always* remains:
  commands run as the calling user (root included) with the full host file system readable *and writable* by
  that user, the host network reachable, and host processes of the same user visible.
  ``Limits(network=False)`` cannot be honoured and is reported by :attr:`LocalExecutor.isolation` and a
  one-time warning. Use the Docker backend for untrusted code on such machines.

Out-of-memory detection (``ExecResult.oom_killed``): true when the memory cgroup's OOM-kill counter rose
during the command (any of its processes was killed), or, as RLIMIT_AS makes allocations fail rather than
invoking an OOM killer, when a memory limit is set and the command's stderr ends in an allocation failure
(``MemoryError``, ``std::bad_alloc``, ``Cannot allocate memory``, ``out of memory``), or it died of a
SIGKILL that neither the timeout nor the CPU limit sent.

>>> from execgym.executor.base import Limits, SandboxSpec
>>> ex = LocalExecutor()
>>> with ex.sandbox(SandboxSpec(files={"hello.py": "print('hi')"})) as sb:
...     r = sb.run(["python", "hello.py"], timeout=10)
>>> (r.exit_code, r.stdout, r.timed_out)
(0, 'hi\\n', False)
"""

from __future__ import annotations

from execgym.executor.local.bwrap import SANDBOX_GID, SANDBOX_UID, bwrap_status
from execgym.executor.local.cgroup import memory_limit_scope
from execgym.executor.local.sandbox import UNCONFINED_ENV, LocalExecutor, LocalSandbox
from execgym.executor.local.session import LocalSession

__all__ = [
    "SANDBOX_GID",
    "SANDBOX_UID",
    "UNCONFINED_ENV",
    "LocalExecutor",
    "LocalSandbox",
    "LocalSession",
    "bwrap_status",
    "memory_limit_scope",
]
