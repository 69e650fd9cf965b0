"""The agents' commands for the ``execgym`` CLI: ``serve``, ``train`` (GRPO, or ``--sft``) and ``init-model``.

``execgym.cli`` calls :func:`register` with its subparsers; each command sets ``func``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _positive_int(text: str) -> int:
    from execgym.cli import _positive_int as parse

    return parse(text)


# dataclass fields whose option is named otherwise (one ``--wrapper`` per spec, as ``execgym run`` takes them)
_FLAGS = {"wrappers": "--wrapper"}


def _value_parser(type_name: str) -> Any:
    if type_name.startswith("dict"):
        return json.loads
    if type_name.startswith("int"):
        return int
    if type_name.startswith("float"):
        return float
    return str


def _add_dataclass_options(parser: argparse.ArgumentParser, classes: tuple[type, ...]) -> None:
    """One ``--field-name`` option per field of the dataclasses (defaults None: the dataclass decides)."""
    seen: dict[str, str] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name in seen:
                continue
            type_name = str(f.type)
            seen[f.name] = type_name
            flag = _FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            owners = [c.__name__.removesuffix("Args") for c in classes if f.name in {g.name for g in
                                                                                       dataclasses.fields(c)}]
            help_text = f"default {default!r}" + ("" if len(owners) == len(classes) else f" ({'/'.join(owners)})")
            if type_name == "bool":
                parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                    help=help_text)
            elif f.name == "wrappers":
                parser.add_argument(flag, dest=f.name, action="append", default=None,
                                    metavar="NAME[:JSON]", help="reward wrapper from execgym.wrappers, innermost first "
                                    "(repeatable), e.g. 'GatedReward:{\"components\": {\"format\": 0.1}}'")
            else:
                parser.add_argument(flag, dest=f.name, type=_value_parser(type_name), default=None,
                                    metavar=f.name.upper(), help=help_text)


def _build_args(cls: type, ns: argparse.Namespace) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(ns).items() if v is not None and k in _ALL_FIELDS}
    foreign = sorted(k for k in given if k not in names)
    if foreign:
        mode = "--sft" if cls.__name__ == "SFTArgs" else "GRPO"
        flags = ", ".join(_FLAGS.get(k, "--" + k.replace("_", "-")) for k in foreign)
        raise SystemExit(f"execgym train: {flags} do not apply to {mode} training")
    for key in ("dataset", "split"):  # "none" on the command line means None
        if isinstance(given.get(key), str) and given[key].lower() == "none":
            given[key] = None
    if "wrappers" in given:
        from execgym.cli import checked_wrappers

        given["wrappers"] = checked_wrappers(given["wrappers"], "train")
    return cls(**given)


_ALL_FIELDS: set[str] = set()

# what save_pretrained writes for a model and its tokenizer: init-model --overwrite removes these, nothing else
MODEL_FILES = ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json", "*.bin",
               "tokenizer*", "special_tokens_map.json", "added_tokens.json", "chat_template*", "vocab.json",
               "merges.txt")


def _check_env(ns: argparse.Namespace, command: str) -> None:
    """Resolve a short env name (as ``play`` and ``run`` do) and build the env once, so that a bad name, dataset,
    split or keyword is one clear line before any model loads."""
    from execgym.cli import make_env_checked, resolve_env_id

    ns.env_id = resolve_env_id(ns.env_id or "execgym/TextToSQL-v0")
    kwargs = dict(ns.env_kwargs or {})
    for key in ("dataset", "split", "max_turns"):
        value = getattr(ns, key, None)
        if value is not None and not (isinstance(value, str) and value.lower() == "none"):
            kwargs.setdefault(key, value)
    make_env_checked(ns.env_id, kwargs, command).close()


def _rate(value: Any) -> str:
    return "n/a (every episode errored)" if value is None else f"{value:.3f}"


def _train(ns: argparse.Namespace, cls: type, run: Any, command: str, model_hint: str,
           errors: tuple[type[BaseException], ...]) -> dict[str, Any]:
    """Build ``cls`` from the options, check the env, and run ``run``; its expected errors are one line."""
    args = _build_args(cls, ns)
    if not args.model:
        raise SystemExit(f"{command}: --model is required ({model_hint})")
    _check_env(ns, "train")
    args.env_id = ns.env_id
    try:
        result: dict[str, Any] = run(args, on_log=_print_record)
    except errors as exc:
        raise SystemExit(f"{command}: {' '.join(str(exc).split())}") from None
    return result


def cmd_train(ns: argparse.Namespace) -> int:
    from execgym.agents.train.grpo import GRPOArgs, train
    from execgym.agents.train.sft import SFTArgs, train_sft

    _quiet_transformers()
    if ns.sft:
        result = _train(ns, SFTArgs, train_sft, "execgym train --sft", "a folder or hub id; see execgym init-model",
                        (FileExistsError, RuntimeError, OSError))
        print(f"SFT: greedy success {_rate(result['before']['success_rate'])} -> "
              f"{_rate(result['after']['success_rate'])} after {result['optimizer_steps']} optimizer step(s); "
              f"model in {result['final']}")
        return 0
    result = _train(ns, GRPOArgs, train, "execgym train", "a folder or hub id", (FileExistsError, OSError))
    if not result["trained"]:
        print(f"GRPO: no optimizer step ran ({result['note']}); {result['final']} is the starting model, "
              f"unchanged; log {result['log']}")
        return 0
    print(f"GRPO: {result['optimizer_steps']} optimizer step(s), {result['episodes_dropped']} episode(s) dropped "
          f"for infra/agent errors; final greedy success {_rate(result.get('success_rate'))}; "
          f"model in {result['final']}; log {result['log']}")
    return 0


def _print_record(record: dict[str, Any]) -> None:
    parts = []
    for key, value in record.items():
        if key == "components":
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    print(" ".join(parts), file=sys.stderr, flush=True)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def cmd_serve(ns: argparse.Namespace) -> int:
    from execgym.agents.serve import serve

    _quiet_transformers()
    serve(ns.model, host=ns.host, port=ns.port, model_name=ns.served_model_name, device=ns.device, dtype=ns.dtype,
          max_batch=ns.max_batch, default_max_tokens=ns.max_tokens, trust_remote_code=ns.trust_remote_code,
          idle_timeout_s=ns.idle_timeout, max_body_bytes=ns.max_body_bytes, generation_timeout_s=ns.generation_timeout)
    return 0


def cmd_init_model(ns: argparse.Namespace) -> int:
    import execgym
    from execgym.agents.tiny import build_tiny_policy

    _quiet_transformers()
    env_kwargs: dict[str, Any] = {}
    for item in ns.env_arg or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--env-arg expects KEY=VALUE, got {item!r}")
        try:
            env_kwargs[key] = json.loads(raw)
        except json.JSONDecodeError:
            env_kwargs[key] = raw
    if ns.dataset:
        env_kwargs["dataset"] = ns.dataset
    from execgym.cli import make_env_checked, prepare_out_dir, resolve_env_id

    ids = execgym.registered_envs() if ns.env == "all" else [resolve_env_id(e) for e in ns.env.split(",")]
    envs = [make_env_checked(env_id, env_kwargs, "init-model") for env_id in ids]
    try:
        prepare_out_dir(Path(ns.out), overwrite=ns.overwrite, outputs=MODEL_FILES, command="init-model")
        path = build_tiny_policy(ns.out, envs, episodes=ns.episodes, vocab_size=ns.vocab_size,
                                 hidden_size=ns.hidden_size, num_layers=ns.layers, num_heads=ns.heads,
                                 seed=ns.seed)
    finally:
        for env in envs:
            env.close()
    print(f"tiny model (random weights, tokenizer trained on {len(ids)} env(s)) saved to {path}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``serve``, ``train`` and ``init-model`` to the ``execgym`` command line."""
    from execgym.agents.train.grpo import GRPOArgs
    from execgym.agents.train.sft import SFTArgs

    serve = subparsers.add_parser("serve", help="an OpenAI-compatible chat-completions server around a local model")
    serve.add_argument("--model", required=True, help="a local folder or hub id (from_pretrained)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--served-model-name", dest="served_model_name", help="the model id clients see")
    serve.add_argument("--device", default="auto")
    serve.add_argument("--dtype", default="auto")
    serve.add_argument("--max-batch", dest="max_batch", type=int, default=32)
    serve.add_argument("--max-tokens", dest="max_tokens", type=int, default=512,
                       help="completion budget of a request that gives none")
    serve.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_true")
    serve.add_argument("--idle-timeout", dest="idle_timeout", type=float, default=30.0, metavar="SECONDS",
                       help="close a connection that sends nothing for this long (default 30)")
    serve.add_argument("--max-body-bytes", dest="max_body_bytes", type=int, default=8 * 1024 * 1024,
                       help="larger request bodies get 413 unread (default 8 MiB)")
    serve.add_argument("--generation-timeout", dest="generation_timeout", type=float, default=600.0,
                       metavar="SECONDS", help="a generation that takes longer gets 504 (default 600)")
    serve.set_defaults(func=cmd_serve)

    train = subparsers.add_parser(
        "train", help="GRPO-style RL on an env (or --sft: fine-tune on oracle demonstrations)",
        description="Options are the fields of GRPOArgs (and SFTArgs with --sft); dict options take JSON.")
    train.add_argument("--sft", action="store_true", help="supervised warm start on oracle trajectories")
    train.add_argument("--env", dest="env_id", default=None, help="alias of --env-id")
    _add_dataclass_options(train, (GRPOArgs, SFTArgs))
    _ALL_FIELDS.update(f.name for c in (GRPOArgs, SFTArgs) for f in dataclasses.fields(c))
    train.set_defaults(func=cmd_train)

    init = subparsers.add_parser("init-model", help="build a tiny from-scratch model + tokenizer for an env")
    init.add_argument("--out", required=True, help="folder to save_pretrained into (new or empty)")
    init.add_argument("--overwrite", action="store_true",
                      help="--out holds a model: remove its model and tokenizer files first")
    init.add_argument("--env", required=True, help="env id(s), comma-separated, or 'all' (the tokenizer's text)")
    init.add_argument("--dataset", help="the envs' dataset, e.g. generated:easy")
    init.add_argument("--env-arg", action="append", metavar="KEY=VALUE")
    init.add_argument("--episodes", type=_positive_int, default=64, help="chats per env to train the tokenizer on")
    init.add_argument("--vocab-size", dest="vocab_size", type=int, default=2048)
    init.add_argument("--hidden-size", dest="hidden_size", type=int, default=128)
    init.add_argument("--layers", type=int, default=2)
    init.add_argument("--heads", type=int, default=4)
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(func=cmd_init_model)
