"""SWE repair: fix a Python repository so its failing tests pass, graded as SWE-bench grades.

Registered as ``execgym/SWERepair-v0`` (entry point ``execgym.envs.swe.env:SWERepairEnv``). Modules:
``env`` (the env and its tools), ``tasks`` (bundled bug tasks and the seeded bug generator), ``repos`` (the
bundled repositories and their bug catalogue), ``validation`` (bugs checked in sandboxes), ``workspace`` (a
task's working copy), ``swebench`` (the SWE-bench loader), ``mutations`` (AST bug injection, one class per
operator), ``patches`` (unified diffs), ``grading`` (JUnit parsing, SWE-bench rules, hack flags), ``analysis``
(the bounded analysis process), ``runner`` (test runs and file listings in a sandbox), ``build`` (rebuilds the
bundled bug catalogue).

Example:
    >>> from execgym.envs.swe import SWERepairEnv
    >>> SWERepairEnv.description
    'Repair a Python repository so its failing tests pass (SWE-bench-style grading).'
"""

from execgym.envs.swe.env import SWERepairEnv

__all__ = ["SWERepairEnv"]
