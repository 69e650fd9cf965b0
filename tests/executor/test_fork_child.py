"""A process forked after a sandbox was made (a vector env's subprocess) does not own it: closing its copy,
explicitly or when the copy is collected, leaves the parent's sandbox and its processes running."""

from __future__ import annotations

import gc
import os

from execgym.executor import LocalExecutor


def test_closing_a_forked_childs_copy_leaves_the_parents_sandbox_working() -> None:
    executor = LocalExecutor()
    sandbox = executor.sandbox()
    try:
        sandbox.write_files({"a.txt": "parent"})
        assert sandbox.run(["cat", "a.txt"], timeout=30).stdout == "parent"  # the supervisor is running
        pid = os.fork()
        if pid == 0:  # the child: close the copy, then drop and collect it
            code = 1
            try:
                sandbox.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        pid = os.fork()
        if pid == 0:
            try:
                gc.collect()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        result = sandbox.run(["cat", "a.txt"], timeout=30)  # the same supervisor, the same work directory
        assert (result.exit_code, result.stdout) == (0, "parent"), result
        assert os.path.isdir(sandbox.host_workdir)
    finally:
        sandbox.close()
        executor.close()
    assert not os.path.exists(sandbox.host_workdir)  # the parent's close still removes it
