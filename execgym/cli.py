"""The ``execgym`` command line: list, play, run, replay (and the executor's images / sandbox commands)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import gymnasium as gym

import execgym
from execgym.core import report as R
from execgym.core.report import FinalReport

__all__ = ["checked_env_kwargs", "checked_wrappers", "env_keywords", "main", "make_env_checked", "resolve_env_id"]


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name in ("dataset", "split", "max_turns", "executor"):
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value
    kwargs.update(_key_values(getattr(args, "env_arg", None), "--env-arg"))
    return kwargs


def _key_values(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; values are JSON where they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON (or a 5,000-digit number): the text itself
            out[key] = raw
    return out


def checked_wrappers(items: Sequence[str] | None, command: str) -> list[str]:
    """``--wrapper NAME`` or ``--wrapper 'NAME:{"json": "kwargs"}'`` specs as given, innermost first, each checked
    by :func:`execgym.wrappers.parse_wrapper_spec` before anything runs (a bad one is one line)."""
    from execgym.wrappers import parse_wrapper_spec

    for item in items or []:
        try:
            parse_wrapper_spec(item)
        except ValueError as exc:
            raise SystemExit(f"execgym {command}: --wrapper: {exc}") from None
    return list(items or [])


def _timeout(text: str) -> float | None:
    """``--act-timeout``: seconds > 0, or ``0``/``none`` for no limit."""
    if text.strip().lower() in ("0", "none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number) or 'none', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds > 0 or 'none', got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_env_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="bundled | generated[:difficulty] | <format>:<path>")
    p.add_argument("--split", help="split to use (bundled filter, or the dataset's file)")
    p.add_argument("--max-turns", type=_positive_int, dest="max_turns")
    p.add_argument("--executor", choices=("local", "docker"),
                   help="local | docker: where envs that run code run it (envs that run none ignore it)")
    p.add_argument("--env-arg", action="append", metavar="KEY=VALUE", help="extra env kwarg (JSON value)")


def resolve_env_id(name: str) -> str:
    """A registered env id from a full id or a unique part of one (case-insensitive: ``SQL``, ``tooluse``).

    An exact short name (``ToolUse``, ``ToolUse-v0``) wins over longer ids that contain it; a part that
    matches several ids is refused with the list of them.
    """
    if name in gym.registry:
        return name
    known = execgym.registered_envs(include_unavailable=True)  # a missing extra is named when the env is made
    low = name.lower()
    candidates = [i for i in known if low in i.lower()]
    if len(candidates) == 1:
        return candidates[0]
    exact = [i for i in candidates if low in (i.split("/")[-1].lower(), i.split("/")[-1].rsplit("-v", 1)[0].lower())]
    if len(exact) == 1:
        return exact[0]
    if candidates:
        raise SystemExit(f"ambiguous env {name!r}: it matches {', '.join(candidates)}; give more of the name")
    raise SystemExit(f"unknown env {name!r}; registered: {', '.join(known) or 'none'}")


def env_keywords(env_id: str) -> set[str] | None:
    """The keyword arguments the env's constructor accepts (following ``**kwargs`` up its base classes), or
    None when they cannot be known (a factory function that takes ``**kwargs``)."""
    from gymnasium.envs.registration import load_env_creator

    creator = gym.registry[env_id].entry_point
    if isinstance(creator, str):
        creator = load_env_creator(creator)
    classes = inspect.getmro(creator) if inspect.isclass(creator) else ()
    targets = [c.__init__ for c in classes if "__init__" in vars(c)] if classes else [creator]
    names: set[str] = set()
    for target in targets:
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                     and p.name != "self")
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return None if not classes else names


def checked_env_kwargs(env_id: str, kwargs: dict[str, Any], command: str) -> dict[str, Any]:
    """``kwargs`` for ``env_id``: ``executor`` dropped for envs that run no code, unknown keywords refused
    in one line that names them and lists the accepted ones."""
    accepted = env_keywords(env_id)
    if accepted is None:
        return dict(kwargs)
    kwargs = {k: v for k, v in kwargs.items() if k != "executor" or "executor" in accepted}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        given = ", ".join(repr(k) for k in unknown)
        raise SystemExit(f"execgym {command}: {env_id} takes no keyword {given}; it accepts: "
                         f"{', '.join(sorted(accepted - {'render_mode', 'tasks'}))}")
    return kwargs


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def make_env_checked(env_id: str, kwargs: dict[str, Any], command: str, **extra: Any) -> gym.Env[Any, Any]:
    """``gym.make`` with the kwargs checked first; a bad dataset, split or value is one clear line (SystemExit).
    ``DependencyNotInstalled`` passes through (``run --env all`` skips such envs)."""
    kwargs = checked_env_kwargs(env_id, kwargs, command)
    try:
        return gym.make(env_id, **kwargs, **extra)
    except gym.error.DependencyNotInstalled:
        raise
    except (ValueError, KeyError, TypeError, OSError, gym.error.Error) as exc:
        raise SystemExit(f"execgym {command}: {env_id}: {_one_line(exc)}") from None


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    ids = execgym.registered_envs(include_unavailable=True)  # those missing an extra are listed with its command
    if not ids:
        print("no envs registered", file=out)
        return 0
    rows = []
    for env_id in ids:
        try:
            env = gym.make(env_id)
        except gym.error.DependencyNotInstalled as exc:
            rows.append((env_id, str(exc), "-", "-"))
            continue
        except Exception as exc:  # one broken env must not hide the others
            rows.append((env_id, f"cannot be built: {type(exc).__name__}: {_one_line(exc)}", "-", "-"))
            continue
        try:
            unwrapped = env.unwrapped
            splits = unwrapped.tasks.splits()  # type: ignore[attr-defined]
            gen = "yes" if unwrapped.task_generator() is not None else "no"  # type: ignore[attr-defined]
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(splits.items()) if v >= 0)
            rows.append((env_id, type(unwrapped).description, counts, gen))  # type: ignore[attr-defined]
        finally:
            env.close()
    width = max(len(r[0]) for r in rows)
    print(f"{'env id':<{width}}  {'generator':<9}  tasks per split  |  description", file=out)
    for env_id, desc, counts, gen in rows:
        print(f"{env_id:<{width}}  {gen:<9}  {counts}  |  {desc}", file=out)
    return 0


def _read_reply(inp: TextIO, out: TextIO) -> str | None:
    """Read one reply: a line, or several when each but the last ends with a backslash."""
    lines: list[str] = []
    print("you> ", end="", file=out, flush=True)
    while True:
        line = inp.readline()
        if not line:
            return None if not lines else "\n".join(lines)
        line = line.rstrip("\n")
        if line.endswith("\\"):
            lines.append(line[:-1])
            print("...> ", end="", file=out, flush=True)
            continue
        lines.append(line)
        return "\n".join(lines)


def schema_type(schema: dict[str, Any]) -> str:
    """A JSON schema as a short type: ``integer``, ``array[string]``, ``{city: string, days?: integer}``, ``'a'|'b'``.

    Example:
        >>> schema_type({"type": "object", "properties": {"q": {"type": "string"},
        ...              "tags": {"type": "array", "items": {"enum": ["a", "b"]}}}, "required": ["q"]})
        "{q: string, tags?: array['a'|'b']}"
    """
    if "enum" in schema:
        return "|".join(json.dumps(v).replace('"', "'") for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(schema_type(s) for s in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array[{schema_type(schema['items'])}]"
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if not props:
            return "object"
        return "{" + _fields(props, schema.get("required") or []) + "}"
    return str(kind or "any")


def _fields(props: dict[str, Any], required: Sequence[str]) -> str:
    return ", ".join(f"{name}{'' if name in required else '?'}: {schema_type(sub)}" for name, sub in props.items())


def _tool_line(tool: dict[str, Any]) -> str:
    fn = tool["function"]
    params = fn.get("parameters") or {}
    return f"{fn['name']}({_fields(params.get('properties') or {}, params.get('required') or [])}): " \
           f"{fn.get('description', '')}"


def _parse_reply(reply: str) -> Any:
    """A typed reply as the env's action: a bare JSON call is parsed; one with a syntax error goes to the env
    inside ``<tool_call>`` so that the env says it is not valid JSON, as it does for any malformed call."""
    stripped = reply.strip()
    if not stripped.startswith(("{", "[")):
        return reply
    from execgym.core.actions import decode_json

    value, problem = decode_json(stripped)
    return f"<tool_call>{stripped}</tool_call>" if problem else value


def cmd_play(args: argparse.Namespace, out: TextIO, inp: TextIO) -> int:
    from execgym.agents import AGENTS, make_agent

    env_id = resolve_env_id(args.env)
    if args.agent and args.agent not in AGENTS:
        raise SystemExit(f"execgym play: unknown agent {args.agent!r}; known agents: {', '.join(AGENTS)}")
    env = make_env_checked(env_id, _env_kwargs(args), "play", render_mode="ansi")
    try:
        return _play(env, env_id, args, out, inp, make_agent)
    finally:
        env.close()


def _play(env: gym.Env[Any, Any], env_id: str, args: argparse.Namespace, out: TextIO, inp: TextIO,
          make_agent: Any) -> int:
    options = {R.TASK_ID: args.task_id} if args.task_id else None
    try:
        obs, info = env.reset(seed=args.seed, options=options)
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"execgym play: {env_id}: {_one_line(exc)}") from None
    try:
        agent = make_agent(args.agent, env, seed=args.seed) if args.agent else None
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"execgym play: {_one_line(exc)}") from None
    png = Path(args.png) if args.png else None
    if png is not None and getattr(env.unwrapped, "save_render", None) is None:
        print(f"(--png: {type(env.unwrapped).__name__} draws no picture; no PNG will be written)", file=out)
        png = None
    print(f"== {env_id} · task {info[R.TASK_ID]} ({info.get(R.DIFFICULTY)}) ==", file=out)
    print("tools:", file=out)
    for tool in info[R.TOOLS]:
        print(f"  {_tool_line(tool)}", file=out)
    if agent is None:
        print('Type a reply; a tool call is {"name": ..., "arguments": {...}} or <tool_call>...</tool_call>.'
              " End a line with \\ to continue it. :quit ends, :transcript shows the episode, Ctrl-C stops.",
              file=out)
    else:
        agent.reset(info)
    print(f"\n{obs}\n", file=out)
    terminated = truncated = False
    turns, total = 0, 0.0
    stopped = ""
    try:
        while not (terminated or truncated):
            if agent is not None:
                try:
                    action: Any = agent.act(obs, info)
                except Exception as exc:  # an agent that fails ends the episode; it is not the env's outcome
                    stopped = f"agent error {type(exc).__name__}: {_one_line(exc)}"
                    break
                print(f"{agent.name}> {action if isinstance(action, str) else json.dumps(action)}", file=out)
            else:
                reply = _read_reply(inp, out)
                if reply is None or reply.strip() == ":quit":
                    stopped = "stopped"
                    break
                if reply.strip() == ":transcript":
                    print(env.render(), file=out)
                    continue
                action = _parse_reply(reply)
            obs, reward, terminated, truncated, info = env.step(action)
            turns += 1
            total += float(reward)
            comps = ", ".join(f"{k}={v:g}" for k, v in info.get(R.REWARD_COMPONENTS, {}).items())
            print(f"\n{obs}\n[turn {info[R.TURN]} · reward {float(reward):g} · {comps}]\n", file=out)
            if png is not None:
                _save_picture(env, png / f"{info[R.TASK_ID]}-turn{info[R.TURN]:02d}.png", out)
    except KeyboardInterrupt:
        stopped = "interrupted"
    if terminated or truncated:
        how = "truncated: the turn limit was reached before the episode ended" if truncated and not terminated \
            else "terminated"
        final = FinalReport.from_info(info)
        print(f"episode over ({how}): outcome {info.get(R.OUTCOME)}, return {total:g} in {turns} turn(s), "
              f"hack flags {final.hack_flags or 'none'}"
              + (f", infra error {final.infra_error}" if final.infra_error else ""), file=out)
    else:
        print(f"\n({stopped}) episode not finished: no outcome; return so far {total:g} in {turns} turn(s)", file=out)
    return 0


def _save_picture(env: gym.Env[Any, Any], path: Path, out: TextIO) -> None:
    """Save the env's picture of the episode (envs that draw one, such as CAD) as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"picture saved to {env.unwrapped.save_render(path)}", file=out)  # type: ignore[attr-defined]


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from execgym.core.trajectory import replay_file

    path = Path(args.file)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.jsonl"))
        hint = f" (it holds {', '.join(found[:4])}{', ...' if len(found) > 4 else ''})" if found else ""
        raise SystemExit(f"execgym replay: {args.file} is a folder, not a trajectory file{hint}")
    if not path.is_file():
        raise SystemExit(f"execgym replay: no such file: {args.file}")
    try:
        results = replay_file(path, trust_entry_points=args.trust_entry_points)
    except (ValueError, KeyError, TypeError, OSError, gym.error.Error) as exc:
        raise SystemExit(f"execgym replay: {args.file}: {_one_line(exc)}") from None
    if not results:
        print(f"{args.file}: no episodes", file=out)
        return 1
    print(f"{'#':>4}  {'task':<28} {'steps':>5}  {'recorded':>9}  {'replayed':>9}  reproduced", file=out)
    for r in results:
        mark = "yes" if r.reproduced else f"NO  {r.message}"
        print(f"{r.index:>4}  {r.task_id!s:<28} {r.steps:>5}  {r.recorded_return:>9.3f}  "
              f"{r.replayed_return:>9.3f}  {mark}", file=out)
    bad = sum(not r.reproduced for r in results)
    print(f"{len(results) - bad}/{len(results)} episodes reproduced", file=out)
    return 1 if bad else 0


# the files a run writes into --out; --overwrite removes these (and nothing else) before it starts
RUN_OUTPUTS = ("*__*.jsonl", "summary.json", "*__components.png", "report.html")


def prepare_out_dir(out_dir: Path, *, overwrite: bool, outputs: Sequence[str], command: str) -> None:
    """Make ``out_dir`` ready for a fresh run: refuse a folder that holds files unless ``overwrite``, which
    removes the ``outputs`` (glob patterns) an earlier run left, so two runs never mix."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SystemExit(f"execgym {command}: --out {out_dir} is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise SystemExit(f"execgym {command}: --out {out_dir} is not empty (an earlier run?); choose a new "
                             "folder or pass --overwrite to start it fresh")
        for pattern in outputs:
            for old in out_dir.glob(pattern):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _count_records(paths: Sequence[Path]) -> tuple[int, int]:
    """How many episode records the files hold, and how many of them the agent ended (raised or hung)."""
    from execgym.core.trajectory import read_trajectories

    count = agent_ended = 0
    for path in paths:
        try:
            for record in read_trajectories(path):
                count += 1
                agent_ended += bool(record.get(R.AGENT_ERROR))
        except (OSError, ValueError):  # a damaged file: count what reads, the run's results are already out
            continue
    return count, agent_ended


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from execgym.agents import AGENTS
    from execgym.rollout.runner import format_table, run_baseline, summaries_to_json

    ids = (execgym.registered_envs(include_unavailable=True) if args.env == "all"
           else [resolve_env_id(e) for e in args.env.split(",")])
    if not ids:
        raise SystemExit("no envs registered")
    agents = list(dict.fromkeys(a.strip() for a in args.agent.split(",") if a.strip()))  # once each: one file each
    for agent in agents:
        if agent not in AGENTS:
            raise SystemExit(f"execgym run: unknown agent {agent!r}; known agents: {', '.join(AGENTS)}")
    wrappers = checked_wrappers(args.wrapper, "run")
    agent_kwargs = _key_values(args.agent_arg, "--agent-arg")
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise SystemExit("execgym run: --backend ray needs Ray: pip install 'execgym[ray]'") from None
        if args.num_envs > 1:
            raise SystemExit("execgym run: --backend ray takes no --num-envs (its actors each play one episode at "
                             "a time; --workers sets how many play at once)")
        if args.env_server:
            raise SystemExit("execgym run: --env-server and --backend ray do not go together (Ray actors make "
                             "their own envs)")
    # every env is built once first: a bad keyword, dataset or split is one clear line before anything runs
    kwargs_by_env: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for env_id in ids:
        try:
            kwargs_by_env[env_id] = checked_env_kwargs(env_id, _env_kwargs(args), "run")
            if args.env_server:  # the server makes the envs: ask it (its install, its data), not this machine
                make_env_checked(execgym.REMOTE_ENV_ID, {"url": args.env_server, "env_id": env_id,
                                                         **kwargs_by_env[env_id]}, "run").close()
            else:
                make_env_checked(env_id, kwargs_by_env[env_id], "run").close()
        except gym.error.DependencyNotInstalled as exc:
            if args.env != "all":
                raise SystemExit(f"execgym run: {env_id}: {_one_line(exc)}") from None
            print(f"skipping {env_id}: {exc}", file=out)
            kwargs_by_env.pop(env_id, None)
        except Exception as exc:  # not bad input: the env itself is broken
            line = f"{env_id} cannot be built: {type(exc).__name__}: {_one_line(exc)}"
            if args.env != "all":
                raise SystemExit(f"execgym run: {line}") from None
            # --env all: the other envs still run; the run exits 1 at the end
            failures.append(line)
            print(f"error: {line}", file=sys.stderr)
            kwargs_by_env.pop(env_id, None)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        prepare_out_dir(out_dir, overwrite=args.overwrite, outputs=RUN_OUTPUTS, command="run")
    summaries = []
    by_run: dict[tuple[str, str], list[Any]] = {}
    for env_id, env_kwargs in kwargs_by_env.items():
        for agent in agents:
            def progress(done: int, total: int, env_id: str = env_id, agent: str = agent) -> None:
                bar = "#" * (20 * done // total)
                print(f"\r{env_id} · {agent}: [{bar:<20}] {done}/{total}", end="", file=sys.stderr, flush=True)

            try:
                summary, results = run_baseline(
                    env_id, agent, args.episodes, seed=args.seed, env_kwargs=env_kwargs, agent_kwargs=agent_kwargs,
                    wrappers=wrappers, num_envs=args.num_envs, out_dir=out_dir, progress=progress,
                    act_timeout_s=args.act_timeout, backend=args.backend, num_workers=args.workers,
                    address=args.address, env_server=args.env_server)
            except Exception as exc:  # one env's failure must not lose the rows already finished
                print(file=sys.stderr)
                failures.append(f"{env_id.removeprefix('execgym/')} · {agent}: the run failed: "
                                f"{type(exc).__name__}: {_one_line(exc)}")
                print(f"error: {failures[-1]}", file=sys.stderr)
                continue
            print(file=sys.stderr)
            by_run[(env_id, agent)] = results
            summaries.append(summary)
            if out_dir is not None:  # after every row, so an interrupted run keeps what it finished
                (out_dir / "summary.json").write_text(json.dumps(summaries_to_json(summaries), indent=2))
    if summaries:
        print(format_table(summaries), file=out)
    if out_dir is not None:
        if not summaries:
            (out_dir / "summary.json").write_text("[]")
        plots: list[Path] = []
        if by_run:
            try:
                from execgym.rollout.plots import plot_run

                plots = plot_run(by_run, out_dir)
            except ImportError:
                print("(no PNG plots: pip install matplotlib)", file=out)
        files = sorted(out_dir.glob("*__*.jsonl"))
        written, agent_ended = _count_records(files)
        ended = f" ({agent_ended} ended by an agent error)" if agent_ended else ""
        what = (f"{written} trajectories{ended} in {len(files)} file(s)" if written
                else "no trajectories (no episode started)")
        print(f"{what}, summary.json and {len(plots)} plot(s) written to {out_dir}", file=out)
    for summary in summaries:
        if summary.all_failed:  # a row that measured nothing is a failed run, not a 0.00 of the policy's
            failures.append(summary.failure_line())
            print(f"error: {failures[-1]}", file=sys.stderr)
    return 1 if failures else 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="execgym", description="Multi-turn, execution-grounded envs for LLM agents.")
    parser.add_argument("--version", action="version", version=f"execgym {execgym.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every env with its description and task counts per split")
    play = sub.add_parser("play", help="step an env by hand in the terminal (or watch an agent play)")
    play.add_argument("--env", required=True, help="env id, e.g. execgym/TextToSQL-v0 (or a unique part)")
    play.add_argument("--agent", help="let an agent play while you watch (oracle, random)")
    play.add_argument("--seed", type=int)
    play.add_argument("--task-id", dest="task_id")
    play.add_argument("--png", metavar="DIR", help="save the env's picture after every turn (CAD: part beside target)")
    _add_env_options(play)
    run = sub.add_parser("run", help="a baseline run: agents on envs, then a results table")
    run.add_argument("--env", default="all", help="env id(s), comma-separated, or 'all'")
    run.add_argument("--agent", default="oracle,random", help="agent name(s), comma-separated")
    run.add_argument("--episodes", type=_positive_int, default=20)
    run.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED+i")
    run.add_argument("--out", help="folder for trajectories (JSONL), summary.json and PNG plots (new or empty)")
    run.add_argument("--overwrite", action="store_true",
                     help="--out holds an earlier run: remove its trajectories, summary and plots first")
    run.add_argument("--agent-arg", action="append", metavar="KEY=VALUE",
                     help="agent kwarg (JSON value), e.g. base_url=http://127.0.0.1:8000/v1 model=NAME")
    run.add_argument("--num-envs", type=_positive_int, default=1, help="episodes in flight at once (ready-first slots)")
    run.add_argument("--wrapper", action="append", metavar="NAME[:JSON]",
                     help="reward wrapper from execgym.wrappers, innermost first, e.g. 'GatedReward:{\"components\": "
                          "{\"executed\": 0.1}}'")
    run.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="local: episodes one after another here; ray: on Ray actors (pip install execgym[ray])")
    run.add_argument("--address", help="--backend ray: the Ray cluster to join (default: start a local one)")
    run.add_argument("--env-server", dest="env_server", metavar="URL",
                     help="play the envs on an `execgym env-server` at URL (the agents run here)")
    run.add_argument("--workers", type=_positive_int, default=2, help="--backend ray: how many actors")
    run.add_argument("--act-timeout", dest="act_timeout", type=_timeout, default=600.0, metavar="SECONDS",
                     help="the longest one agent call may take; over it the episode is an agent error "
                          "(AgentTimeout). 0 or none: no limit (default 600)")
    _add_env_options(run)
    replay = sub.add_parser("replay", help="re-run recorded episodes and report whether rewards reproduce")
    replay.add_argument("file")
    replay.add_argument("--trust-entry-points", action="store_true",
                        help="also build envs the file names that are not registered execgym/ ids "
                             "(this imports and runs the code the file names: only for files you trust)")
    # Commands contributed by other parts of the package, when they are installed.
    for module in ("execgym.executor.cli", "execgym.rollout.cli", "execgym.agents.cli", "execgym.view.cli",
                   "execgym.server.cli", "execgym.envs.swe.cli"):
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, inp: TextIO | None = None) -> int:
    out = out or sys.stdout
    inp = inp or sys.stdin
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args, out)
        if args.command == "play":
            return cmd_play(args, out, inp)
        if args.command == "run":
            return cmd_run(args, out)
        if args.command == "replay":
            return cmd_replay(args, out)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"execgym {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
