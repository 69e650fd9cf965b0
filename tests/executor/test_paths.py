"""Path validation: the pure check, and the local backend's symlink-aware opening."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import execgym
from execgym.executor import LocalExecutor, PathError, SandboxSpec, validate_relpath
from execgym.executor.local import bwrap as local_mod
from execgym.executor.local.files import open_inside as _open_inside

CHECKOUT = Path(execgym.__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a.txt", "a.txt"), ("./a/./b.py", "a/b.py"), ("a//b", "a/b"), ("dir/sub/", "dir/sub"), ("..a/b..", "..a/b..")],
)
def test_valid_paths_are_normalised(path: str, expected: str) -> None:
    assert validate_relpath(path) == expected


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "..", ".", "./", "\\\\server\\share", "C:\\x", "a\x00b"]
)
def test_invalid_paths_are_rejected(path: str) -> None:
    with pytest.raises(PathError):
        validate_relpath(path)


def test_pathlike_is_accepted() -> None:
    from pathlib import PurePosixPath

    assert validate_relpath(PurePosixPath("a/b")) == "a/b"


segment = st.sampled_from(["a", "b", ".", "..", "", "c.txt", "..."])


@given(st.lists(segment, min_size=1, max_size=6), st.booleans())
def test_validated_paths_never_climb_or_start_at_root(parts: list[str], absolute: bool) -> None:
    path = ("/" if absolute else "") + "/".join(parts)
    try:
        out = validate_relpath(path)
    except PathError:
        assert path.startswith("/") or ".." in parts or all(p in ("", ".") for p in parts)
        return
    assert not out.startswith("/") and ".." not in out.split("/") and "" not in out.split("/")
    assert not path.startswith("/") and ".." not in parts


def test_spec_rejects_bad_file_paths() -> None:
    with pytest.raises(PathError):
        SandboxSpec(files={"../x": "y"})


def test_open_inside_follows_only_internal_symlinks(tmp_path: os.PathLike[str]) -> None:
    root = os.path.join(os.fspath(tmp_path), "root")
    os.makedirs(os.path.join(root, "real"))
    outside = os.path.join(os.fspath(tmp_path), "secret.txt")
    with open(outside, "w") as f:
        f.write("secret")
    os.symlink("real", os.path.join(root, "rel"))
    os.symlink(os.path.join(root, "real"), os.path.join(root, "abs_inside"))
    os.symlink(outside, os.path.join(root, "abs_outside"))
    os.symlink("../secret.txt", os.path.join(root, "rel_outside"))
    os.symlink("loop", os.path.join(root, "loop"))
    os.mkfifo(os.path.join(root, "fifo"))

    for via in ("rel/f.txt", "abs_inside/g.txt", "real/h.txt"):
        fd = _open_inside(root, via, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, create_parents=True)
        os.close(fd)
    assert sorted(os.listdir(os.path.join(root, "real"))) == ["f.txt", "g.txt", "h.txt"]
    fd = _open_inside(root, "new/deep/dir/x.txt", os.O_WRONLY | os.O_CREAT, create_parents=True)
    os.close(fd)
    assert os.path.isfile(os.path.join(root, "new/deep/dir/x.txt"))

    for bad in ("abs_outside", "rel_outside", "rel/../../secret.txt"):
        with pytest.raises(PathError):
            _open_inside(root, bad, os.O_RDONLY, create_parents=False)
    with pytest.raises(PathError):
        _open_inside(root, "loop", os.O_RDONLY, create_parents=False)
    with pytest.raises(PathError):
        _open_inside(root, "fifo", os.O_RDONLY, create_parents=False)
    with pytest.raises(PathError):
        _open_inside(root, "real", os.O_RDONLY, create_parents=False)
    with pytest.raises(FileNotFoundError):
        _open_inside(root, "nope/x.txt", os.O_RDONLY, create_parents=False)


def test_local_write_files_refuses_symlinked_parent_leading_out(tmp_path: os.PathLike[str]) -> None:
    with LocalExecutor().sandbox() as sb:
        os.symlink(os.fspath(tmp_path), os.path.join(sb.host_workdir, "link"))
        with pytest.raises(PathError):
            sb.write_files({"link/planted.txt": "x"})
    assert os.listdir(os.fspath(tmp_path)) == []


# ------------------------------------------------------------------- what of the host sys.path is bound

_SCRIPT = """
import json, os, sys
from execgym.executor import LocalExecutor, SandboxSpec
ex = LocalExecutor()
out = {"bwrap": ex.use_bwrap}
if ex.use_bwrap:
    worker = "import json, sys\\nfor line in sys.stdin: print(json.dumps(json.loads(line) + 1), flush=True)\\n"
    with ex.sandbox(SandboxSpec(files={"w.py": worker})) as sb:
        out["pwd"] = sb.run(["pwd"]).stdout.strip()
        out["workdir"] = sb.workdir
        r = sb.run(["python", "-c", "import sys; print(sys.prefix)"])
        out["python"] = [r.exit_code, r.stdout.strip(), r.stderr[-300:]]
        out["session"] = sb.session(["python", "w.py"]).request(41).value
        out["secret"] = sb.run(["cat", sys.argv[1]]).stdout
        out["script_dir"] = sb.run(["ls", "-A", os.path.dirname(os.path.abspath(__file__))]).stdout
        out["tmp"] = sb.run("ls -A /tmp").stdout.split()
        sb.write_files({"x.txt": "y"})
        out["file"] = sb.read_file("x.txt").decode()
print("RESULT " + json.dumps(out))
"""


def _run_script_at(script: Path, secret: Path, tmp_root: str | None = None) -> dict:
    src = _SCRIPT if tmp_root is None else _SCRIPT.replace("LocalExecutor()", f"LocalExecutor(tmp_root={tmp_root!r})")
    script.write_text(src)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(CHECKOUT)  # the tree under test, even run from a copy
    p = subprocess.run(
        [sys.executable, str(script), str(secret)], capture_output=True, text=True, env=env, cwd="/", timeout=120
    )
    assert p.returncode == 0 and "RESULT " in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads(p.stdout.split("RESULT ", 1)[1])


@pytest.mark.parametrize("where", ["tmp", "holds-the-sandboxes"])
def test_a_host_script_in_tmp_or_around_the_sandboxes_works(where: str, tmp_path: Path) -> None:
    """``python /tmp/x.py``: sys.path[0] is /tmp; binding it would hide the sandbox's own /tmp and work dir."""
    token = secrets.token_hex(6)
    if where == "tmp":
        script, tmp_root = Path("/tmp") / f"execgym-test-script-{token}.py", None
    else:  # the script's folder contains the sandboxes' root
        folder = tmp_path / "project"
        (folder / "sandboxes").mkdir(parents=True)
        os.chmod(tmp_path, 0o755)
        os.chmod(folder, 0o755)
        script, tmp_root = folder / "x.py", str(folder / "sandboxes")
    secret = script.with_name(f"secret-{token}.txt")
    secret.write_text("host secret")
    try:
        out = _run_script_at(script, secret, tmp_root)
    finally:
        script.unlink(missing_ok=True)
        secret.unlink(missing_ok=True)
    if not out["bwrap"]:
        pytest.skip("bubblewrap unusable here")
    assert out["pwd"] == out["workdir"]
    assert out["python"][0] == 0 and out["python"][1] == sys.prefix, out["python"]
    assert out["session"] == 42
    assert out["file"] == "y"
    assert out["secret"] == "", "the host script's folder is visible in the sandbox"
    assert secret.name not in out["script_dir"] and script.name not in out["script_dir"], out["script_dir"]
    if where == "tmp":  # the private /tmp holds only the mount point of the sandbox's own work dir
        own = Path(out["workdir"]).parent.name
        assert out["tmp"] == [own], f"the host's /tmp is visible: {out['tmp'][:5]}"


def test_bwrap_args_never_bind_over_private_dirs_or_the_work_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    work = "/tmp/execgym-abc/work"
    sys_path = ["", "/tmp", "/dev/shm", "/dev", "/proc", "/", "/etc", "/tmp/execgym-abc", work, f"{work}/lib"]
    monkeypatch.setattr(local_mod.sys, "path", sys_path + list(sys.path))
    local_mod._interpreter_dirs.cache_clear()
    try:
        dirs = local_mod._interpreter_dirs(sys.executable)
        args = local_mod.bwrap_args(work, network=False, tmp_size=None)
    finally:
        local_mod._interpreter_dirs.cache_clear()
    binds = [(args[i], args[i + 2]) for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
    for flag, dest in binds:
        p = Path(dest)
        for private in ("/tmp", "/dev/shm", "/dev", "/proc", "/etc"):
            assert p != Path(private) and not Path(private).is_relative_to(p), (flag, dest)
        assert dest == "/proc/sys" or not Path(work).is_relative_to(p) or dest == work, (flag, dest)
    assert ("--bind", work) in binds
    assert not any(d in ("/tmp", "/dev/shm", "/dev", "/proc", "/", "/etc", "/tmp/execgym-abc") for d in dirs), dirs


def test_script_folder_is_not_bound_unless_a_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "run.py").write_text("")
    monkeypatch.setattr(local_mod.sys, "argv", [str(scripts / "run.py")])
    monkeypatch.setattr(local_mod.sys, "path", [str(scripts), *sys.path[1:]])
    local_mod._interpreter_dirs.cache_clear()
    try:
        assert str(scripts) not in local_mod._interpreter_dirs(sys.executable)
        # A console script in the interpreter's bin (inside its prefix) is a library folder: still bound.
        bin_dir = Path(sys.executable).parent
        monkeypatch.setattr(local_mod.sys, "argv", [str(bin_dir / "pytest")])
        monkeypatch.setattr(local_mod.sys, "path", [str(bin_dir), *sys.path[1:]])
        local_mod._interpreter_dirs.cache_clear()
        dirs = local_mod._interpreter_dirs(sys.executable)
        assert any(bin_dir.resolve().is_relative_to(d) for d in dirs), dirs
    finally:
        local_mod._interpreter_dirs.cache_clear()
