"""The bubblewrap command line of a local sandbox: what of the host it sees, read-only, and who runs in it.

>>> args = bwrap_args("/tmp/execgym-x/work", network=False, tmp_size=None)
>>> args[:4], "--unshare-net" in args
(['bwrap', '--ro-bind', '/usr', '/usr'], True)
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from execgym.executor import _agent
from execgym.executor.base import AGENT_SOURCE, InfraError

__all__ = ["SANDBOX_GID", "SANDBOX_UID", "bwrap_args", "bwrap_status", "sandbox_ids", "write_identity"]

_PACKAGE_DIR = Path(_agent.__file__).resolve().parents[1]  # the execgym package

#: The uid/gid sandboxed commands run as when the host user is root ("nobody" on most systems).
SANDBOX_UID = 65534
SANDBOX_GID = 65534

# What of /etc a sandbox sees: the dynamic loader, Debian's alternatives (targets of /usr/bin links),
# name resolution and TLS roots (for Limits(network=True)), time zone, fonts. Nothing else of the host's
# /etc (users, ssh, docker, credentials) is bound; passwd and group are generated per sandbox.
_ETC_ALLOWED = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone", "nsswitch.conf",
    "host.conf", "hosts", "resolv.conf", "gai.conf", "protocols", "services", "ssl", "ca-certificates",
    "ca-certificates.conf", "pki", "crypto-policies", "mime.types", "os-release", "fonts", "gitconfig",
)  # fmt: skip
_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _package_checkout() -> Path:
    """The directory execgym must not be seen through: its source checkout, or the installed package."""
    for d in (_PACKAGE_DIR, *_PACKAGE_DIR.parents):
        if (d / ".git").exists() or ((d / "pyproject.toml").is_file() and (d / "execgym").is_dir()):
            return d
    return _PACKAGE_DIR


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _script_folders() -> set[Path]:
    """What this process's ``sys.path[0]`` slot may hold: the running script's folder, or the working
    directory (``-m``); nothing when isolated (``-I``, ``-P``). They are the caller's, not libraries."""
    if sys.flags.isolated or getattr(sys.flags, "safe_path", False):
        return set()
    out: set[Path] = set()
    if sys.path and sys.path[0] and os.path.isabs(sys.path[0]):
        out.add(Path(sys.path[0]).resolve())
    script = sys.argv[0] if sys.argv else ""
    if script not in ("", "-c", "-m") and os.path.isfile(script):
        out.add(Path(script).resolve().parent)
    return out


#: Places a sandbox has its own, private version of: a ``sys.path`` entry that is (or contains) one of
#: them is never bound over it.
_PRIVATE_DIRS = (Path("/tmp"), Path("/dev/shm"), Path("/dev"), Path("/proc"), Path("/etc"))


_PROBE = (
    "import json, site, sys; print(json.dumps({'prefixes': [sys.prefix, sys.base_prefix, sys.exec_prefix], "
    "'path': sys.path, 'site': site.getsitepackages(), "
    "'base_site': site.getsitepackages([sys.base_prefix, sys.base_exec_prefix])}))"
)


def _interpreter_info(python: str) -> dict[str, list[str]]:
    """``python``'s prefixes, ``sys.path``, site-packages and its base's site-packages (a probe, cached)."""
    if python == sys.executable:  # read live: tests change sys.path and clear _interpreter_dirs' cache
        return {
            "prefixes": [sys.prefix, sys.base_prefix, sys.exec_prefix],
            "path": list(sys.path),
            "site": site.getsitepackages(),
            "base_site": site.getsitepackages([sys.base_prefix, sys.base_exec_prefix]),
        }
    venv = Path(python).parent.parent
    if (venv / "pyvenv.cfg").is_file():
        return _venv_info(str(venv))
    return _probe(python)


@cache
def _venv_info(venv_dir: str) -> dict[str, list[str]]:
    """A venv's folders, read from its ``pyvenv.cfg`` and never by running it on the host: a sandbox's venv
    may come from a dataset, and its interpreter (or a ``.pth`` file in it) would run as the host's user.
    Only a venv of this machine's Python (the supervisor's base) is accepted; its ``sys.path`` is that base's
    standard library plus the venv's own site-packages (and the base's, for ``--system-site-packages``)."""
    venv = Path(venv_dir)
    cfg: dict[str, str] = {}
    try:
        for line in (venv / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                cfg[key.strip().lower()] = value.strip()
    except (OSError, UnicodeDecodeError) as e:
        raise InfraError(f"cannot read the sandbox venv's pyvenv.cfg in {venv_dir!r}: {e}") from e
    base = Path(sys.base_prefix).resolve()
    home = Path(cfg.get("home", "")).resolve() if cfg.get("home") else None
    if home is None or home.parent != base:
        raise InfraError(
            f"the sandbox interpreter in {venv_dir!r} is not a venv of this machine's Python ({base}): "
            f"its pyvenv.cfg names home = {cfg.get('home')!r}"
        )
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    own_site = [str(venv / "lib" / version / "site-packages")]
    base_site = site.getsitepackages([sys.base_prefix, sys.base_exec_prefix])
    stdlib = [str(base / "lib" / f"python{sys.version_info.major}{sys.version_info.minor}.zip"),
              str(base / "lib" / version), str(base / "lib" / version / "lib-dynload")]
    system = cfg.get("include-system-site-packages", "false").lower() == "true"
    return {
        "prefixes": [str(venv), str(base), str(venv)],
        "path": [*stdlib, *own_site, *(base_site if system else [])],
        "site": own_site,
        "base_site": base_site,
    }


@cache
def _probe(python: str) -> dict[str, list[str]]:
    try:
        out = subprocess.run([python, "-I", "-c", _PROBE], capture_output=True, timeout=30, check=True).stdout
        info = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise InfraError(f"cannot inspect the sandbox interpreter {python!r}: {e}") from e
    if not isinstance(info, dict) or not all(isinstance(info.get(k), list) for k in ("prefixes", "path", "site")):
        raise InfraError(f"cannot inspect the sandbox interpreter {python!r}: unexpected answer {out[:200]!r}")
    return info


@cache
def _interpreter_dirs(python: str) -> tuple[str, ...]:
    """Directories ``python`` needs: its prefixes and its ``sys.path``, minus execgym's checkout.

    Cached per interpreter path: an interpreter other than this one is probed once per process, not per
    sandbox. A prefix is bound even inside the checkout (a ``.venv`` there); other ``sys.path`` entries inside
    the checkout (an editable install's source, added by a ``.pth`` file) are not. Nor are: ``''`` and
    relative entries, the folder of the running script (or the working directory, for ``-m`` / ``-c``)
    unless it lies inside a prefix (e.g. a console script's ``bin``), and any entry that is or contains
    ``/tmp``, ``/dev/shm``, ``/dev``, ``/proc`` or ``/etc``, which the sandbox has its own of. (A script in
    ``/tmp`` once bound the host's ``/tmp`` over the sandbox's, hiding its work dir.)
    """
    data = _interpreter_info(python)
    info = [*data["prefixes"], *data["path"]]
    callers = _script_folders() if python == sys.executable else set()  # -I: no script folder on that path
    exe = Path(python).resolve()
    prefixes = [Path(p).resolve() for p in info[:3] if p] + [Path(python).parent.resolve(), exe.parent]
    checkout = _package_checkout()
    dirs: list[Path] = []
    for i, entry in enumerate([*prefixes, *info[3:]]):
        if not isinstance(entry, (str, Path)) or not os.path.isabs(entry) or not os.path.exists(entry):
            continue
        p = Path(entry).resolve()
        if p.is_file():  # a zip on sys.path
            p = p.parent
        if p == Path("/") or p == checkout or any(d.is_relative_to(p) for d in _PRIVATE_DIRS):
            continue
        in_prefix = any(p.is_relative_to(q) for q in prefixes if q != checkout)
        if i >= len(prefixes) and not in_prefix and (p.is_relative_to(checkout) or p in callers):
            continue
        if p.is_relative_to("/usr") or any(p.is_relative_to(q) for q in dirs):
            continue
        dirs = [q for q in dirs if not q.is_relative_to(p)] + [p]
    return tuple(sorted(str(p) for p in dirs))


def _prefix_dirs(python: str) -> tuple[str, ...]:
    """``python``'s prefixes and the folders of its executable, filtered as :func:`_interpreter_dirs` filters."""
    found = [*_interpreter_info(python)["prefixes"][:3], str(Path(python).parent), str(Path(python).resolve().parent)]
    dirs: list[Path] = []
    for entry in found:
        if not entry or not os.path.isabs(entry) or not os.path.isdir(entry):
            continue
        p = Path(entry).resolve()
        if p == Path("/") or p.is_relative_to("/usr") or any(d.is_relative_to(p) for d in _PRIVATE_DIRS):
            continue
        dirs.append(p)
    return tuple(sorted(str(p) for p in _outermost(sorted(set(dirs)))))


@cache
def _foreign_site_dirs(python: str, sandbox_python: str) -> tuple[str, ...]:
    """Site-packages the sandbox sees through bound folders without them being ``sandbox_python``'s:
    those of ``python`` (the supervisor's interpreter) and of ``sandbox_python``'s base, less any on
    ``sandbox_python``'s ``sys.path`` (a venv made with ``--system-site-packages`` keeps them)."""
    own = _interpreter_info(sandbox_python)
    theirs = _interpreter_info(python)
    keep = {Path(p).resolve() for p in own["path"] if isinstance(p, str) and os.path.isabs(p)}
    needed = [Path(d) for d in _interpreter_dirs(sandbox_python)]
    out: set[Path] = set()
    for entry in [*theirs["site"], *own.get("base_site", []), *theirs.get("base_site", [])]:
        if not isinstance(entry, str) or not os.path.isabs(entry) or not os.path.isdir(entry):
            continue
        p = Path(entry).resolve()
        if p in keep or any(k.is_relative_to(p) for k in keep) or any(d.is_relative_to(p) for d in needed):
            continue
        out.add(p)
    return tuple(sorted(str(p) for p in out))


def _outermost(paths: list[Path]) -> list[Path]:
    """``paths`` without those inside another of them, in order."""
    return [p for p in paths if not any(p != q and p.is_relative_to(q) for q in paths)]


def bwrap_args(
    workdir: str,
    network: bool,
    tmp_size: int | None,
    *,
    python: str = sys.executable,
    sandbox_python: str | None = None,
    etc_dir: str | None = None,
) -> list[str]:
    """The bubblewrap command line of one sandbox: only the paths a sandbox needs, read-only.

    Bound: ``/usr`` (and the merged-``/usr`` links or directories beside it), an allowlist of ``/etc``,
    the interpreter's prefixes and ``sys.path`` (without execgym's checkout), the work dir (read-write).
    ``python`` runs the supervisor; ``sandbox_python`` (a venv's ``bin/python``), when given, is the one
    behind ``python`` in the sandbox: its folders are bound too, read-only, and the site-packages of
    ``python`` and of the venv's base that are not on its ``sys.path`` are masked with an empty folder.
    Private: ``/tmp``, ``/dev/shm``, a minimal ``/dev``, ``/proc`` of a new PID namespace. Nothing else of
    the host (``/root``, ``/home``, ``/run``, ``/var``, ``/sys``, sockets, the checkout and its ``.git``)
    exists inside. Any bound directory that still contains execgym's checkout gets it masked.
    """
    size = ["--size", str(tmp_size)] if tmp_size else []
    args = ["bwrap", "--ro-bind", "/usr", "/usr"]
    for name in _USR_LINKS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC_ALLOWED:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    if etc_dir is not None:
        for name in ("passwd", "group"):
            args += ["--ro-bind", os.path.join(etc_dir, name), f"/etc/{name}"]
    args += [
        "--dev", "/dev",
        "--proc", "/proc",
        "--ro-bind", "/proc/sys", "/proc/sys",  # read-only whatever the file modes say
        *size, "--perms", "1777", "--tmpfs", "/tmp",
        *size, "--perms", "1777", "--tmpfs", "/dev/shm",
    ]  # fmt: skip
    made = {"/", "/usr", "/etc", "/tmp", "/dev", "/proc"}
    bound = [Path("/usr")]
    work = Path(workdir)
    # Never over (or inside) the work dir: a folder holding it would hide it behind the host's copy,
    # whose sandbox root is mode 0700.
    wanted = [Path(d) for d in _interpreter_dirs(python)]
    masked: list[Path] = []
    if sandbox_python is not None and sandbox_python != python:
        # The supervisor runs with -I -S: its standard library is all it needs, so the rest of its sys.path
        # (the user site, folders a .pth file adds, an editable install's source) stays out of a venv's sandbox.
        wanted = [Path(d) for d in _prefix_dirs(python)] + [Path(d) for d in _interpreter_dirs(sandbox_python)]
        masked = [Path(d) for d in _foreign_site_dirs(python, sandbox_python)]
    lib_dirs = [str(d) for d in _outermost(sorted(set(wanted))) if not _overlaps(d, work)]
    for d in [*lib_dirs, workdir]:
        for parent in reversed(Path(d).parents):
            if str(parent) not in made and not any(parent.is_relative_to(b) for b in bound):
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--bind" if d == workdir else "--ro-bind", d, d]
        bound.append(Path(d))
        made.add(d)
    # A masked folder is an empty read-only tmpfs: nothing can be mounted inside it afterwards.
    masks = [m for m in {_package_checkout(), _PACKAGE_DIR, *masked} if not _overlaps(m, work)]
    for hidden in sorted(_outermost(masks)):
        if any(hidden.is_relative_to(b) for b in bound[:-1]):  # e.g. a non-editable install in site-packages
            args += ["--tmpfs", str(hidden), "--remount-ro", str(hidden)]
    args += ["--remount-ro", "/"]  # the skeleton bwrap made (/etc, mount points) is read-only too
    args += [
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "sandbox",
        "--die-with-parent", "--as-pid-1",
        "--chdir", workdir,
    ]  # fmt: skip
    if not network:
        args.append("--unshare-net")
    if os.geteuid() == 0:
        # The supervisor spends these three on becoming SANDBOX_UID (see _agent.drop_privileges).
        args += ["--cap-drop", "ALL"] + [a for c in ("SETUID", "SETGID", "SETPCAP") for a in ("--cap-add", f"CAP_{c}")]
    return args


def write_identity(etc_dir: str, uid: int, gid: int, home: str) -> None:
    """Generated ``/etc/passwd`` and ``/etc/group`` naming only root and the sandbox user."""
    os.makedirs(etc_dir, exist_ok=True)
    Path(etc_dir, "passwd").write_text(
        f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nsandbox:x:{uid}:{gid}:sandbox:{home}:/bin/sh\n"
    )
    Path(etc_dir, "group").write_text(f"root:x:0:\nsandbox:x:{gid}:\n")


@cache
def bwrap_status() -> tuple[bool, str]:
    """Whether bubblewrap works here (probed once per process), and why not if it does not.

    The probe runs the real configuration: as root it must also drop to ``SANDBOX_UID``.

    >>> ok, why = bwrap_status()
    >>> isinstance(ok, bool) and isinstance(why, str)
    True
    """
    exe = shutil.which("bwrap")
    if exe is None:
        return False, "bwrap is not installed"
    with tempfile.TemporaryDirectory(prefix="execgym-probe-") as d:
        work = os.path.join(d, "work")
        os.mkdir(work)
        write_identity(os.path.join(d, "etc"), *sandbox_ids(), work)
        try:
            argv = [*bwrap_args(work, network=False, tmp_size=1 << 20, etc_dir=os.path.join(d, "etc")), "--"]
        except InfraError as e:
            return False, str(e)
        config = {"drop": list(sandbox_ids()) if os.geteuid() == 0 else None}
        argv += [sys.executable, "-I", "-S", "-c", AGENT_SOURCE, "probe", json.dumps(config)]
        try:
            p = subprocess.run(argv, capture_output=True, timeout=20, env={"PATH": os.defpath})
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"bwrap failed to start: {e}"
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        return False, f"bwrap is installed but unusable (user namespaces disabled?): {err[-1] if err else p.returncode}"
    return True, "bwrap works"


def sandbox_ids() -> tuple[int, int]:
    """The uid/gid sandboxed commands run as: SANDBOX_UID when the host user is root, else the user's own."""
    if os.geteuid() == 0:
        return SANDBOX_UID, SANDBOX_GID
    return os.getuid(), os.getgid()
