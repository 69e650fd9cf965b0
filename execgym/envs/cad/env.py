"""CADModelEnv: write a CadQuery program that builds the part a description asks for.

Seed paper: CAD-RL (executability, geometric accuracy and external evaluation rewards; precise
dimensions). Field conventions: CADPrompt (two descriptions per part), Text2CAD, CAD-Recode / cadrille
(chamfer distance on 8,192 points in a unit-normalised frame, IoU).

Tools: ``run_cadquery(code)`` runs a program in a persistent sandboxed worker (CadQuery imported once per
process: the env's worker is forked from a fork server the process's envs share, into namespaces of its own;
every run in a fresh fork of that worker) and reports the part's measurements or the error;
``submit(code)`` runs the final program, keeps its part and ends the episode; ``_grade`` grades that part and
the last observation adds the grade. A fenced ```python block in a raw reply is a ``run_cadquery`` call.

Grading happens in a separate trusted worker that never sees the agent's code, only the BREP bytes of its
part: ``Grade.components`` = ``executable``, ``valid_solid``, ``iou`` (exact, from boolean volumes; voxel
IoU as fallback), ``chamfer`` / ``chamfer_score``, ``bbox_error``, ``volume_error``, ``dims`` (fraction of
key dimensions matched) and, with an ``external_judge``, ``external``.

This module imports without CadQuery; constructing the env needs it (``pip install execgym[cad]``).
"""

from __future__ import annotations

import binascii
import contextlib
import copy
import functools
import hashlib
import math
import re
import warnings
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from cachetools import LRUCache

from execgym.core.env import AgentEnv
from execgym.core.errors import InfraError
from execgym.core.report import FinalReport, Grade, Unit
from execgym.core.tasks import Generator, Loader, Task
from execgym.core.tools import Tool, ToolOutput
from execgym.envs.cad.families import fmt
from execgym.envs.cad.grading import (
    CADGrader,
    ForkedAgent,
    KernelProcess,
    NamespacesUnavailable,
    SharedGrader,
    Thresholds,
    require_cadquery,
    resolve_executor,
    score,
)
from execgym.envs.cad.host import HostGrader
from execgym.envs.cad.kernel import MAX_PART_BYTES, box_iou, unb64
from execgym.envs.cad.render import (
    PART_COLOR,
    TARGET_COLOR,
    Mesh,
    _framing,
    png_bytes,
    render_comparison,
    render_views,
    save_png,
    text_image,
)
from execgym.envs.cad.tasks import LOADERS, bundled_tasks, generate_task

__all__ = ["CADModelEnv", "ExternalJudge"]

ExternalJudge = Callable[[Mapping[str, np.ndarray], str], float]
"""``judge(images, description) -> score``: images ``"part"``, ``"target"``, ``"comparison"`` (HxWx3 uint8)."""

SYSTEM_PROMPT = """\
You are a mechanical CAD engineer. Build the part the user describes by writing a CadQuery (Python) program.

Tools:
- run_cadquery(code): runs a complete program and reports the part it built (volume, bounding box, number \
of solids, faces and edges, whether it is a valid closed solid) or the error with the end of its traceback. \
You can also just write the program in a ```python fenced block: it is run the same way.
- submit(code): runs your final program, grades the part against the target and ends the episode.

Rules for programs:
- Every run starts fresh: nothing carries over between calls. Start with `import cadquery as cq`.
- Leave the finished part in a variable named `result` (a cq.Workplane or a Shape), or call show_object(part).
- Units are millimetres. Place and orient the part exactly as described: it is compared in place with the \
target (volume overlap, surface distance, bounding box and key dimensions such as hole diameters)."""

_HACK_PATTERNS = [
    (
        re.compile(r"\bimport(Brep|Step|Stl|DXF)\b|\bimporters\.|\bfromBRep|b64decode|\bBRepTools\b"),
        "loads geometry from data or a file instead of modelling it",
    ),
    (
        re.compile(r"\b(subprocess|socket|ctypes|multiprocessing)\b|os\.(system|kill|fork|exec\w*|popen)\b"),
        "uses process, network or foreign-function calls",
    ),
    (re.compile(r"/proc/|getppid|\bsignal\.|sys\.modules"), "inspects or tampers with the worker process"),
]


class CADModelEnv(AgentEnv):
    """Text-to-CAD: build a described part with CadQuery; graded by geometry against a reference part.

    Args:
        executor: where agent programs run: ``"local"``, ``"docker"`` (image ``cad``), an
            :class:`~execgym.executor.base.Executor`, or None (``$EXECGYM_EXECUTOR``, else local).
        prompt: ``"detailed"`` (with measurements, default) or ``"abstract"`` (CADPrompt's two variants).
        thresholds: a :class:`~execgym.envs.cad.grading.Thresholds` or a dict of its fields (pass rule,
            IoU / bounding-box / dims thresholds, tolerances, ``rule="cadqueryeval"``).
        external_judge: ``judge(images, description) -> float`` (CAD-RL's external evaluation reward),
            called at the end with the rendered part and target; its score is ``reward_components["external"]``.
        run_timeout_s: wall-clock limit of one program run (CPU is limited to the same plus 1 s).
        memory_mb: memory a program may allocate beyond the worker's own.
        grader: a :class:`~execgym.envs.cad.grading.CADGrader` of your own (default: the one this process's
            envs share on ``grader_executor``, or one per env with ``share_workers=False``).
        grader_executor: the executor of the env's own grader, which runs the tasks' reference programs
            (default: ``executor``, so that with ``"docker"`` no dataset code runs on this machine).
        image: the sandbox image kind for agent programs (Docker: ``cad``).
        share_workers: envs share one trusted grader (it never runs agent code) and one agent fork server.
            True (default) or ``"host"``: with the local executor, every CAD env on this machine shares them,
            whichever process it is in (a vector env's subprocesses, Ray workers): they live in a CAD host
            daemon that the envs start and that stops when no env holds it (:mod:`execgym.envs.cad.host`);
            with other executors, the envs of this process share them. ``"process"``: the envs of this process
            share workers of the process's own. False: a grader of the env's own.
        fork_agent_workers: with ``share_workers`` and the local executor, fork every env's agent worker, each
            in namespaces of its own, from one agent fork server that imported CadQuery once (default True).
            Each forked worker keeps the limits a sandbox of its own would have: a process budget of its own
            and, where sandboxes get a memory cgroup (as root), a memory cgroup of its own. False: one sandbox
            per env's agent worker. Where this sandbox cannot make private namespaces, envs fall back to
            that with a warning.
        render_tile: pixel size of one view in ``rgb_array`` pictures.
        grade_on_truncation: when the episode is truncated without ``submit``, grade the last part the agent
            built (True) or give outcome 0 (False).
        kwargs: ``dataset``, ``split``, ``max_turns``, ``render_mode``, ``tasks``, ...: see
            :class:`~execgym.core.env.AgentEnv` (datasets: ``bundled``, ``generated[:difficulty]``,
            ``jsonl:FILE``, ``cadprompt:DIR``).
        allow_paths_outside_dataset: let the files a dataset names (prompt files, meshes) resolve outside its own
            folder, symlinks included (default: refused at load time).
        skip_invalid_rows: skip malformed dataset rows with a warning that counts them (default: the first one is a
            ``ValueError`` naming the file and the row).

    Example:
        >>> import gymnasium as gym, execgym
        >>> env = gym.make("execgym/CADModel-v0", render_mode="rgb_array")                  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)                                                   # doctest: +SKIP
        >>> obs, r, term, trunc, info = env.step(
        ...     "```python\\nimport cadquery as cq\\nresult = cq.Workplane().box(80, 60, 10)\\n```")  # doctest: +SKIP
        >>> env.render().shape                                                              # doctest: +SKIP
        (516, 720, 3)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    description = "Text-to-CAD with CadQuery: build a described mechanical part; graded by IoU, chamfer and dimensions."
    default_max_turns = 10
    loaders = LOADERS

    def __init__(
        self,
        *,
        executor: Any = None,
        prompt: str = "detailed",
        thresholds: Thresholds | Mapping[str, Any] | None = None,
        external_judge: ExternalJudge | None = None,
        run_timeout_s: float = 30.0,
        memory_mb: int = 2048,
        grader: CADGrader | None = None,
        grader_executor: Any = None,
        image: str = "cad",
        share_workers: bool | str = True,
        fork_agent_workers: bool = True,
        render_tile: int = 240,
        grade_on_truncation: bool = True,
        allow_paths_outside_dataset: bool = False,
        skip_invalid_rows: bool = False,
        **kwargs: Any,
    ) -> None:
        grader_executor = executor if grader_executor is None else grader_executor
        if _runs_here(executor) or (grader is None and _runs_here(grader_executor)):
            require_cadquery("execgym/CADModel-v0")
        if prompt not in ("detailed", "abstract"):
            raise ValueError(f"prompt must be 'detailed' or 'abstract', got {prompt!r}")
        if not run_timeout_s > 0:
            raise ValueError(f"run_timeout_s must be > 0, got {run_timeout_s!r}")
        # Read by task_loaders() while the base loads the dataset.
        self._dataset_options = {
            "allow_outside": bool(allow_paths_outside_dataset),
            "skip_bad": bool(skip_invalid_rows),
        }
        super().__init__(**kwargs)
        self.prompt_variant = prompt
        self.thresholds = Thresholds.from_any(thresholds)
        self.external_judge = external_judge
        self.run_timeout_s = float(run_timeout_s)
        self.memory_bytes = int(memory_mb) * 1024 * 1024
        self.render_tile = int(render_tile)
        self.grade_on_truncation = bool(grade_on_truncation)
        if share_workers not in (True, False, "host", "process"):
            raise ValueError(f"share_workers must be True, False, 'host' or 'process', got {share_workers!r}")
        self.share_workers = bool(share_workers)
        self.fork_agent_workers = bool(fork_agent_workers) and self.share_workers
        self.session: KernelProcess | ForkedAgent
        agent_share = _share_scope(share_workers, executor)
        if self.fork_agent_workers and _is_local(executor):
            self.session = ForkedAgent(executor, image=image, memory_bytes=self.memory_bytes, share=agent_share)
        else:
            self.session = KernelProcess(executor, "agent", image=image, memory_bytes=self.memory_bytes)
        self._owns_grader = grader is None
        if grader is not None:
            self.grader = grader
        elif self.share_workers and _share_scope(share_workers, grader_executor) == "host":
            self.grader = HostGrader(resolve_executor(grader_executor), memory_bytes=self.memory_bytes)
        elif self.share_workers:
            self.grader = SharedGrader.acquire(grader_executor, memory_bytes=self.memory_bytes)
        else:
            self.grader = CADGrader(grader_executor, memory_bytes=self.memory_bytes)
        self._ref_key: str | None = None
        self._key_dims: list[dict[str, Any]] = []
        self._last_part: dict[str, Any] | None = None
        self._final_part: dict[str, Any] | None = None
        self._submission: dict[str, Any] | None = None  # what submit ran: its code, and its error if it built no part
        self._graded: Grade | None = None
        self._tamper_flags: list[str] = []
        # Meshes of parts and targets for pictures, bounded by their bytes (a failed tessellation is kept as None).
        self._meshes: LRUCache[str, Mesh | None] = LRUCache(MESH_CACHE_BYTES, getsizeof=_mesh_bytes)
        self.runs = 0

    # ------------------------------------------------------------------------------------------ tasks
    def bundled_tasks(self) -> list[Task]:
        return bundled_tasks()

    def task_generator(self) -> Generator:
        return generate_task

    def task_loaders(self) -> dict[str, Loader]:
        """The dataset loaders, bound to this env's dataset options (paths outside the dataset, bad rows)."""
        return {name: functools.partial(loader, **self._dataset_options) for name, loader in self.loaders.items()}

    # ---------------------------------------------------------------------------------------- episode
    def _system_prompt(self, task: Task) -> str:
        return SYSTEM_PROMPT

    def statement(self, task: Task) -> str:
        """The description shown for ``task`` (the ``prompt`` variant chosen at construction)."""
        return str(task.data.get(f"prompt_{self.prompt_variant}") or task.prompt)

    def _begin(self, task: Task) -> str:
        self._last_part = None
        self._final_part = None
        self._submission = None
        self._graded = None
        self._tamper_flags = []
        data = task.data
        if not data.get("code") and not data.get("mesh_path"):
            raise InfraError(f"task {task.id!r} has no reference program or mesh to grade against")
        self._register_reference(task)
        dims = list(data.get("key_dims") or [])
        if not dims:
            size = self.grader.summary(self._ref_key).get("size") or []
            dims = [
                {"kind": "extent", "axis": axis, "value": float(v), "label": f"size along {axis.upper()} = {fmt(v)}"}
                for axis, v in zip("xyz", size)
            ]
        self._key_dims = dims
        return self.statement(task)

    def _snapshot_state(self) -> dict[str, Any]:
        # What grading and rendering read: the parts built so far (BREP bytes and the code behind them), the
        # grade once there is one, and the key dimensions. The reference part is rebuilt by the grader.
        return copy.deepcopy(
            {
                "last_part": self._last_part,
                "final_part": self._final_part,
                "submission": self._submission,
                "graded": self._graded,
                "key_dims": self._key_dims,
                "tamper_flags": self._tamper_flags,
            }
        )

    def _restore_state(self, state: dict[str, Any]) -> None:
        assert self.task is not None
        # Registering is idempotent per task: another instance builds the reference in its own grader.
        self._register_reference(self.task)
        restored = copy.deepcopy(state)
        self._last_part = restored["last_part"]
        self._final_part = restored["final_part"]
        self._submission = restored.get("submission")
        self._graded = restored["graded"]
        self._key_dims = restored["key_dims"]
        self._tamper_flags = list(restored.get("tamper_flags") or [])
        self._meshes.clear()

    def _register_reference(self, task: Task) -> None:
        """Start the workers and have the grader hold ``task``'s reference part (built once per task)."""
        self._start_workers()
        data = task.data
        self._ref_key = self.grader.register(
            task.id,
            code=data.get("code"),
            mesh_path=data.get("mesh_path"),
            fallback_last=bool(data.get("fallback_last")),
            thresholds=self.thresholds,
        )

    def _start_workers(self) -> None:
        """Start the agent worker and the grader together: both import CadQuery (~2 s) at the same time
        (shared ones only for the process's first env)."""
        workers = (self.session, self.grader)
        for worker in workers:
            worker.launch()
        try:
            self.session.wait_ready()
        except NamespacesUnavailable as exc:
            # This sandbox cannot isolate forked env workers from each other: a worker of the env's own.
            warnings.warn(f"CAD envs fall back to one agent worker each: {exc}", RuntimeWarning, stacklevel=2)
            self.session.close()
            self.session = KernelProcess(
                self.session.executor_spec, "agent", image=self.session.image, memory_bytes=self.memory_bytes
            )
            self.session.launch()
            self.session.wait_ready()
        self.grader.wait_ready()

    def _tools_key(self, task: Task) -> Hashable:
        return "cad"  # the same two tools for every task: built once per env

    def _tools(self, task: Task) -> list[Tool]:
        return [
            Tool.from_function(self.run_cadquery, code_arg="code"),
            Tool.from_function(self.submit, terminal=True),
        ]

    def run_cadquery(self, code: str) -> ToolOutput:
        """Run a complete CadQuery program and measure the part it leaves in `result`.

        Args:
            code: the whole Python program (import cadquery as cq; ...; result = <Workplane or Shape>).
        """
        reply = self._run(code)
        if reply.get("ok"):
            self._last_part = {"brep": reply["brep"], "measurements": reply["measurements"], "code": code}
            m = reply["measurements"]
            on_target = reply["box_iou"] >= self.thresholds.on_target_iou
            return ToolOutput(
                _describe_part(reply),
                components={"executed": 1.0, "valid_solid": float(bool(m["valid_solid"]) and on_target)},
                data={"measurements": m},
            )
        return ToolOutput(
            _describe_error(reply),
            components={"executed": 0.0, "valid_solid": 0.0},
            is_error=True,
            data={"error_kind": reply.get("kind")},
        )

    def submit(self, code: str) -> ToolOutput:
        """Run your final CadQuery program, grade its part against the target and end the episode.

        Args:
            code: the whole Python program whose `result` is the finished part.
        """
        reply = self._run(code)
        part = {"brep": reply["brep"], "measurements": reply["measurements"], "code": code} if reply.get("ok") else None
        # Grading is _grade's, when the episode ends after this call; the last observation then adds the grade.
        self._final_part = part
        self._submission = {"code": code, "error": None if part else reply}
        if part is None:
            text = "Submitted, but the program did not produce a part:\n" + _describe_error(reply)
        else:
            text = "Submitted."
        return ToolOutput(text, components={"executed": float(part is not None)})

    def _final_observation(self, observation: str, final: FinalReport) -> str:
        """After submit: the grade of the submitted part, what it missed and the outcome."""
        if not final.submitted or self._submission is None:
            return observation
        if final.infra_error:
            return f"{observation}\nThe grading failed (not your fault): {final.infra_error}"
        lines = [observation]
        if self._final_part is not None:
            c = self._graded.components
            lines.append(
                f"Grade: IoU {c['iou']:.4f}, chamfer distance {c['chamfer']:.3g}, bounding box off by "
                f"{c['bbox_error'] * 100:.2f} %, volume off by {c['volume_error'] * 100:.2f} %, key dimensions "
                f"matched {c['dims'] * 100:.0f} %."
            )
            missed = [unit.id for unit in final.units if not unit.passed]
            if missed:
                lines.append("Missed: " + "; ".join(missed[:8]) + (" ..." if len(missed) > 8 else ""))
        lines.append(f"Outcome: {'PASS' if final.outcome >= 1 else 'FAIL'}.")
        return "\n".join(lines)

    def _run(self, code: str) -> dict[str, Any]:
        """Run the agent's program and measure its part with trusted code.

        Returns ``{"ok": True, "brep", "measurements", "iou", "duration_s", "output"}`` or an error reply
        ``{"ok": False, "kind", "error", "output"}``. Everything the agent's sandbox says is untrusted (the program
        may have written the reply itself): only its BREP bytes and printed text are used, and the numbers come
        from the grader, which measures the part from those bytes.
        """
        self.runs += 1
        code = _unfence(code)
        message = {"op": "run", "code": code, "timeout": self.run_timeout_s, "memory_bytes": self.memory_bytes}
        raw: Any = None
        for attempt in range(2):
            try:
                raw = self.session.request(message, timeout=self.run_timeout_s + 30.0)
                break
            except InfraError as exc:
                # The worker died or hung. Its sandbox is gone and a fresh one must start (if it cannot, that is the
                # machinery's failure, raised from here). A worker that died between steps fails only once, so the
                # program runs again on the fresh one; a program that kills or hangs its worker does it twice, and
                # that is the program's failure.
                self.session.start()
                if attempt:
                    return {
                        "ok": False,
                        "kind": "worker",
                        "error": "the CAD worker process died or hung while running the program and was restarted "
                        f"({exc})",
                    }
        reply, tamper = _check_agent_reply(raw)
        if tamper:
            self._tamper_flags.append(tamper)
        if not reply["ok"]:
            return reply
        assert self._ref_key is not None
        orientation = str(self.task.data.get("orientation", "fixed")) if self.task else "fixed"
        inspected = self.grader.inspect(self._ref_key, reply["brep_bytes"], thresholds=self.thresholds)
        if not inspected.get("ok"):
            # The grader could not read or measure the part: the agent's failure (its part), never the grader's.
            # BREP bytes that do not even load are not what CadQuery's exporter writes: flag them.
            if inspected.get("kind") == "part":
                self._tamper_flags.append(FORGED_REPLY)
            return {
                "ok": False,
                "kind": "invalid",
                "error": f"the part could not be measured: {inspected.get('error')}",
                "output": reply["output"],
            }
        measurements = _checked_measurements(inspected.get("measurements"))
        if measurements is None:
            raise InfraError(f"the CAD grading worker returned malformed measurements: {inspected!r:.300}")
        ref = self.grader.summary(self._ref_key)
        overlap = box_iou(
            measurements["bbox_min"],
            measurements["bbox_max"],
            ref.get("bbox_min") or [0, 0, 0],
            ref.get("bbox_max") or [0, 0, 0],
            free=orientation == "free",
        )
        return {
            "ok": True,
            "brep": reply["brep"],
            "measurements": measurements,
            "box_iou": overlap,
            "duration_s": reply["duration_s"],
            "output": reply["output"],
        }

    def _grade(self, submitted: bool) -> Grade:
        if submitted and self._submission is not None:
            sub = self._submission
            self._graded = self._grade_part(self._final_part, sub["code"], error=sub["error"])
            return self._graded
        if not submitted and self.grade_on_truncation and self._last_part is not None:
            self._final_part = self._last_part
            grade = self._grade_part(self._last_part, self._last_part["code"], error=None)
            grade.details["graded"] = "the last part built (the episode ended without submit)"
            self._graded = grade
            return grade
        outcome, components, checks = score(None, self.thresholds, executable=False)
        self._graded = Grade(
            outcome=outcome,
            components=components,
            checklist=checks,
            hack_flags=list(dict.fromkeys(self._tamper_flags)),
            details={"graded": "nothing: no part was submitted"},
        )
        return self._graded

    def _grade_part(self, part: dict[str, Any] | None, code: str, *, error: dict[str, Any] | None) -> Grade:
        assert self.task is not None and self._ref_key is not None
        details: dict[str, Any] = {"rule": self.thresholds.rule}
        metrics = None
        units: list[Unit] = []
        part_solids = None
        if part is not None:
            result = self.grader.grade(
                self._ref_key,
                unb64(part["brep"]),
                key_dims=self._key_dims,
                thresholds=self.thresholds,
                orientation=str(self.task.data.get("orientation", "fixed")),
            )
            if result.get("ok"):
                metrics = result["metrics"]
                part_solids = (result.get("part") or {}).get("solids")
                units = [
                    Unit(d["label"], d["passed"], f"found {d['found']}", extra={"kind": d["kind"], "found": d["found"]})
                    for d in result.get("dims_detail", [])
                ]
                details.update(
                    metrics=metrics,
                    iou_method=result.get("iou_method"),
                    part=result.get("part"),
                    reference=result.get("reference"),
                    aligned=result.get("aligned"),
                    notes=result.get("notes") or [],
                )
            else:
                details["grading_error"] = result.get("error")
        else:
            details["error"] = (error or {}).get("error")
        ref_solids = self.grader.summary(self._ref_key).get("solids")
        outcome, components, checks = score(
            metrics, self.thresholds, executable=part is not None, reference_solids=ref_solids, part_solids=part_solids
        )
        hack_flags = [why for pattern, why in _HACK_PATTERNS if pattern.search(code or "")]
        hack_flags += [f for f in dict.fromkeys(self._tamper_flags) if f not in hack_flags]
        if self.external_judge is not None:
            try:
                images = self.judge_images(part)
                judged = float(self.external_judge(images, self.statement(self.task)))
                if not math.isfinite(judged):
                    raise ValueError(f"the judge returned {judged!r}")
                components["external"] = min(max(judged, 0.0), 1.0)  # documented range 0..1
            except Exception as exc:  # a judge failure must not lose the episode's grade
                details["external_error"] = f"{type(exc).__name__}: {exc}"
        return Grade(
            outcome=outcome,
            components=components,
            units=units,
            checklist=checks,
            hack_flags=hack_flags,
            details=details,
        )

    # -------------------------------------------------------------------------------------- rendering
    def _part_mesh(self, part: dict[str, Any] | None) -> Mesh | None:
        if part is None:
            return None
        key = "part:" + hashlib.sha1(part["brep"].encode()).hexdigest()
        return self._cached_mesh(key, lambda: self.grader.tessellate(brep=unb64(part["brep"])))

    def _target_mesh(self) -> Mesh | None:
        if self._ref_key is None:
            return None
        return self._cached_mesh("ref:" + self._ref_key, lambda: self.grader.tessellate(key=self._ref_key))

    def _cached_mesh(self, key: str, make: Callable[[], Mesh | None]) -> Mesh | None:
        if key in self._meshes:
            return self._meshes[key]
        mesh = make()
        with contextlib.suppress(ValueError):  # a mesh larger than the whole cache is used once, not kept
            self._meshes[key] = mesh
        return mesh

    def _shown_part(self) -> dict[str, Any] | None:
        return self._final_part if self._final_part is not None else self._last_part

    def picture(self) -> np.ndarray:
        """The current part (top row) beside the target (bottom row), three views each, as HxWx3 uint8."""
        if self.task is None:
            return text_image("NO EPISODE: CALL RESET()", width=3 * self.render_tile)
        return render_comparison(self._part_mesh(self._shown_part()), self._target_mesh(), tile=self.render_tile)

    def picture_png(self) -> bytes:
        """:meth:`picture` as PNG bytes (what ``RecordTrajectory`` keeps, and ``execgym view`` shows, per episode)."""
        return png_bytes(self.picture())

    def judge_images(self, part: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """What an external judge sees: ``part`` and ``target`` view strips and the ``comparison`` picture."""
        part_mesh = self._part_mesh(part if part is not None else self._shown_part())
        target_mesh = self._target_mesh()
        center, size = _framing([part_mesh, target_mesh])
        return {
            "part": render_views(
                part_mesh, color=PART_COLOR, center=center, size=size, tile=self.render_tile, label="YOUR PART"
            ),
            "target": render_views(
                target_mesh,
                color=TARGET_COLOR,
                center=center,
                size=size,
                tile=self.render_tile,
                label="TARGET",
                empty_text="NO TARGET",
            ),
            "comparison": render_comparison(part_mesh, target_mesh, tile=self.render_tile),
        }

    def render(self) -> Any:
        if self.render_mode == "rgb_array":
            return self.picture()
        return super().render()

    def save_render(self, path: str | Path) -> Path:
        """Save the current picture (part beside target) as a PNG file; returns its path."""
        return save_png(self.picture(), path)

    # ---------------------------------------------------------------------------------------- cleanup
    def close(self) -> None:
        super().close()
        self.session.close()
        if self._owns_grader:
            self._owns_grader = False  # a shared grader is released once per env
            self.grader.close()
        self._meshes.clear()


_FENCED = re.compile(r"^\s*```[ \t]*[\w+-]*[^\n]*\n(.*?)```\s*$", re.DOTALL)


def _is_local(executor: Any) -> bool:
    """Whether an executor spec is the local sandbox (the agent fork server needs its FIFOs on this machine)."""
    spec = resolve_executor(executor)
    if isinstance(spec, str):
        return spec == "local"
    return getattr(spec, "name", "") == "local" and hasattr(spec, "sandbox")


def _share_scope(share_workers: bool | str, executor: Any) -> str:
    """Where shared workers live: ``"host"`` (the machine's CAD host daemon) for the local executor named by a
    string, unless ``"process"`` is asked for; ``"process"`` otherwise (an executor object is this process's)."""
    if share_workers == "process" or not isinstance(resolve_executor(executor), str) or not _is_local(executor):
        return "process"
    return "host"


def _runs_here(executor: Any) -> bool:
    """Whether an executor spec runs its sandboxes on this machine (so CadQuery must be installed here)."""
    spec = resolve_executor(executor)
    return spec == "local" if isinstance(spec, str) else getattr(spec, "name", "local") == "local"


MESH_CACHE_BYTES = 64 * 1024 * 1024


def _mesh_bytes(mesh: Mesh | None) -> int:
    """What a cached mesh costs: its arrays' bytes (at least 1, so that a failed tessellation counts too)."""
    return max(1, sum(int(getattr(a, "nbytes", 0)) for a in mesh or ()))


def _unfence(code: str) -> str:
    """The program inside a fenced block, when a model wrapped its ``code`` argument in one."""
    match = _FENCED.match(code)
    return match.group(1) if match else code


_ERROR_KINDS = frozenset(
    {"syntax", "runtime", "no_result", "not_3d", "timeout", "memory", "crash", "too_large", "invalid", "internal"}
    | {"protocol"}
)
_OK_KEYS = frozenset({"ok", "brep", "run_s", "output", "duration_s", "restarted"})
_ERROR_KEYS = frozenset({"ok", "kind", "error", "output", "duration_s", "timed_out", "restarted"})
_MAX_BREP_CHARS = 4 * (MAX_PART_BYTES // 3 + 1)
_MAX_TEXT = 4000
FORGED_REPLY = "forged its worker's reply (a result no CadQuery run produces)"


def _text(value: Any) -> str | None:
    return value[-_MAX_TEXT:] if isinstance(value, str) else None


def _check_agent_reply(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Validate what the agent's sandbox answered to a run; returns ``(reply, tamper_flag or None)``.

    The program shares its process with the code that writes this reply, so it can write one itself: the
    reply is data to check, never to trust. A well-formed success keeps only its BREP (decoded here) and
    printed text; anything else that no honest run produces is the program's error, flagged.
    """
    forged = {"ok": False, "kind": "crash", "error": "the program's process returned no valid result", "output": ""}
    if not isinstance(raw, dict) or not isinstance(raw.get("ok"), bool):
        return forged, FORGED_REPLY
    output = _text(raw.get("output", ""))
    duration = raw.get("duration_s", 0.0)
    duration = float(duration) if isinstance(duration, int | float) and math.isfinite(duration) else 0.0
    if raw["ok"]:
        brep = raw.get("brep")
        decoded = None
        if isinstance(brep, str) and 0 < len(brep) <= _MAX_BREP_CHARS:
            with contextlib.suppress(binascii.Error, ValueError):
                decoded = unb64(brep)
        if decoded is None or output is None or set(raw) - _OK_KEYS:
            return {**forged, "output": output or ""}, FORGED_REPLY
        return {"ok": True, "brep": brep, "brep_bytes": decoded, "output": output, "duration_s": duration}, None
    kind, error = raw.get("kind"), _text(raw.get("error", ""))
    if kind not in _ERROR_KINDS or error is None or output is None or set(raw) - _ERROR_KEYS:
        return {**forged, "output": output or ""}, FORGED_REPLY
    return {"ok": False, "kind": kind, "error": error, "output": output, "duration_s": duration}, None


def _checked_measurements(m: Any) -> dict[str, Any] | None:
    """The grader's measurements of a part with the expected types, or None."""
    if not isinstance(m, dict):
        return None
    try:
        out = {k: float(m[k]) for k in ("volume", "area")}
        for k in ("bbox_min", "bbox_max", "size"):
            out[k] = [float(x) for x in m[k]][:3]
        for k in ("solids", "shells", "faces", "edges"):
            out[k] = int(m[k])
        for k in ("valid", "closed", "valid_solid"):
            out[k] = bool(m[k])
    except (KeyError, TypeError, ValueError):
        return None
    return out


def _num(x: float, digits: int = 3) -> str:
    if not math.isfinite(x):
        return str(x)
    return fmt(round(x, digits)) if abs(x) < 1e6 else f"{x:.4g}"


def _describe_part(reply: Mapping[str, Any]) -> str:
    m = reply["measurements"]
    lo, hi, size = m["bbox_min"], m["bbox_max"], m["size"]
    lines = [
        f"OK: the program ran in {reply.get('duration_s', 0.0):.2f} s and built a part.",
        f"volume: {_num(m['volume'], 2)} mm^3",
        "bounding box: "
        + "  ".join(f"{a} [{_num(lo[i])}, {_num(hi[i])}]" for i, a in enumerate("XYZ"))
        + f"  (size {' x '.join(_num(s) for s in size)} mm)",
        f"solids: {m['solids']}   faces: {m['faces']}   edges: {m['edges']}",
        "valid closed solid: "
        + (
            "yes"
            if m["valid_solid"]
            else "NO ("
            + ", ".join(
                w
                for w, bad in (
                    ("no solid", m["solids"] == 0),
                    ("invalid topology", not m["valid"]),
                    ("not closed", not m["closed"]),
                    ("no volume", m["volume"] <= 0),
                )
                if bad
            )
            + ")"
        ),
    ]
    output = (reply.get("output") or "").strip()
    if output:
        lines += ["printed output:", output[-1500:]]
    return "\n".join(lines)


def _describe_error(reply: Mapping[str, Any]) -> str:
    kind = reply.get("kind") or "error"
    titles = {
        "syntax": "the program has a syntax error",
        "runtime": "the program raised an exception",
        "no_result": "the program built no part",
        "not_3d": "the result is not a 3D shape",
        "timeout": "the program ran out of time",
        "memory": "the program ran out of memory",
        "crash": "the program crashed",
        "too_large": "the part is too large",
        "invalid": "the part could not be measured",
        "worker": "the CAD worker failed",
    }
    lines = [f"ERROR: {titles.get(kind, kind)}.", str(reply.get("error") or "").strip()]
    output = (reply.get("output") or "").strip()
    if output:
        lines += ["printed output:", output[-1500:]]
    return "\n".join(line for line in lines if line)
