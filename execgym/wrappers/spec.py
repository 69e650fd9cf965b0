"""One way to name a reward wrapper everywhere: ``"NAME"``, ``'NAME:{"json": "kwargs"}'`` or ``(name, kwargs)``.

The command line (``execgym run --wrapper``, ``execgym train --wrapper``), the rollouts and the trainers all
read wrapper specs through :func:`parse_wrapper_spec` and apply them with :func:`apply_wrappers`, so a wrapper
is named the same way in each, and a bad spec is the same one-line ``ValueError`` naming the known wrappers.

Example:
    >>> from execgym.wrappers import ScriptedEnv
    >>> parse_wrapper_spec('GatedReward:{"components": {"executed": 0.1}}')
    (<class 'execgym.wrappers.gated.GatedReward'>, {'components': {'executed': 0.1}})
    >>> env = apply_wrappers(ScriptedEnv(), ["DenseUnitReward", ("HackPenalty", {"penalty": -1.0})])
    >>> type(env).__name__, type(env.env).__name__
    ('HackPenalty', 'DenseUnitReward')
    >>> parse_wrapper_spec("Nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: unknown reward wrapper 'Nope'; known: ChecklistReward, ClipCredit, ...
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

import gymnasium as gym

__all__ = ["WrapperSpec", "apply_wrappers", "known_wrappers", "parse_wrapper_spec"]

WrapperSpec: TypeAlias = "str | tuple[str, Mapping[str, Any]]"
"""``"NAME"``, ``'NAME:{"json": "kwargs"}'`` or a ``(name, kwargs)`` pair."""


def _registry() -> dict[str, type[gym.Wrapper[Any, Any, Any, Any]]]:
    import execgym.wrappers
    from execgym.wrappers.base import RewardScheme

    out: dict[str, type[gym.Wrapper[Any, Any, Any, Any]]] = {}
    for name in execgym.wrappers.__all__:
        obj = getattr(execgym.wrappers, name, None)
        # RewardScheme is the abstract base: wrapping an env in it pays nothing and fails at the first step.
        if isinstance(obj, type) and issubclass(obj, gym.Wrapper) and obj is not RewardScheme:
            out[name] = obj
    return out


def known_wrappers() -> list[str]:
    """The names a spec may use: the reward wrappers :mod:`execgym.wrappers` exports, sorted."""
    return sorted(_registry())


def _short(spec: Any) -> str:
    """``repr(spec)``, cut so that a huge spec still makes a one-line error of sane length."""
    text = repr(spec)
    return text if len(text) <= 80 else f"{text[:60]}...{text[-15:]}"


def _refuse(what: str) -> ValueError:
    return ValueError(f"{what}; known: {', '.join(known_wrappers())}")


def parse_wrapper_spec(spec: WrapperSpec) -> tuple[type[gym.Wrapper[Any, Any, Any, Any]], dict[str, Any]]:
    """The wrapper class and its keyword arguments that ``spec`` names.

    The keyword names are checked against the class's signature here, so a typo is refused before any env is
    made. Unknown names, kwargs that are not a JSON object and kwargs the class does not take are a one-line
    ``ValueError`` that names the known wrappers.
    """
    if isinstance(spec, str):
        name, sep, raw = spec.partition(":")
    elif isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[0], str):
        name, sep, raw = spec[0], "", ""
    else:
        raise _refuse(f"a reward wrapper spec is 'NAME', 'NAME:{{JSON}}' or a (name, kwargs) pair, got {_short(spec)}")
    name = name.strip()
    registry = _registry()
    if name not in registry:
        raise _refuse(f"unknown reward wrapper {_short(name)}")
    kwargs: Any = {}
    if isinstance(spec, str):
        if sep and raw.strip():
            try:
                kwargs = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise _refuse(f"reward wrapper {_short(spec)}: the kwargs after ':' are not JSON ({exc.msg})") from None
            except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting too deep
                reason = " ".join(str(exc).split())
                raise _refuse(f"reward wrapper {_short(spec)}: the kwargs after ':' are not usable JSON ({reason})"
                              ) from None
            if not isinstance(kwargs, dict):
                raise _refuse(f"reward wrapper {_short(spec)}: the kwargs after ':' must be a JSON object")
    else:
        kwargs = {} if spec[1] is None else spec[1]
        if not isinstance(kwargs, Mapping):
            raise _refuse(f"reward wrapper {name!r}: kwargs must be a mapping, got {type(kwargs).__name__}")
    cls = registry[name]
    kwargs = {str(key): value for key, value in kwargs.items()}
    try:
        inspect.signature(cls).bind(None, **kwargs)
    except TypeError as exc:
        taken = list(inspect.signature(cls).parameters)[1:]
        raise ValueError(f"reward wrapper {name!r}: {exc}; it takes: {', '.join(taken) or 'no arguments'}") from None
    return cls, kwargs


def apply_wrappers(env: gym.Env[Any, Any], specs: Iterable[WrapperSpec]) -> gym.Env[Any, Any]:
    """``env`` wrapped by each spec in turn, innermost first (every spec is parsed before any is applied)."""
    if isinstance(specs, str):  # one spec, not a sequence of one-letter names
        specs = [specs]
    parsed = [parse_wrapper_spec(spec) for spec in specs]
    for cls, kwargs in parsed:
        env = cls(env, **kwargs)
    return env
