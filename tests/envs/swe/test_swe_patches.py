import random
import shutil
import subprocess

import pytest

from execgym.envs.swe.patches import (
    PatchError,
    added_lines,
    apply_patch,
    make_patch,
    parse_patch,
    reverse_patch,
    touched_paths,
)


def _random_edit(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.4 and lines:
            lines[rng.randrange(len(lines))] = f"changed {rng.randint(0, 99)}\n"
        elif op < 0.7:
            lines.insert(rng.randint(0, len(lines)), f"inserted {rng.randint(0, 99)}\n")
        elif lines:
            del lines[rng.randrange(len(lines))]
    out = "".join(lines)
    if rng.random() < 0.2 and out:
        out = out.rstrip("\n")
    return out


def _edit_pairs(seed: int, count: int, word: str, values: int, sizes: tuple[int, int]):
    """Up to ``count`` random texts of ``word N`` lines, each with a random edit of it (edits that change
    nothing are skipped)."""
    rng = random.Random(seed)
    for _ in range(count):
        old = "".join(f"{word} {rng.randint(0, values)}\n" for _ in range(rng.randint(*sizes)))
        new = _random_edit(rng, old)
        if old != new:
            yield old, new


def test_round_trip_random_edits():
    for old, new in _edit_pairs(0, 200, "line", 15, (0, 25)):
        patch = make_patch({"f.txt": old}, {"f.txt": new})
        assert apply_patch(patch, {"f.txt": old}.get) == {"f.txt": new}
        assert apply_patch(reverse_patch(patch), {"f.txt": new}.get) == {"f.txt": old}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_patches_are_valid_for_git_apply(tmp_path):
    for i, (old, new) in enumerate(_edit_pairs(1, 25, "row", 9, (1, 20))):
        work = tmp_path / str(i)
        work.mkdir()
        (work / "f.txt").write_text(old)
        patch = make_patch({"f.txt": old}, {"f.txt": new})
        done = subprocess.run(["git", "apply", "-"], input=patch, text=True, cwd=work, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert (work / "f.txt").read_text() == new


def test_create_and_delete_files():
    patch = make_patch({"old.py": "x = 1\n"}, {"new/mod.py": "y = 2\n"})
    assert "--- /dev/null" in patch and "+++ /dev/null" in patch
    assert apply_patch(patch, {"old.py": "x = 1\n"}.get) == {"new/mod.py": "y = 2\n", "old.py": None}
    assert sorted(touched_paths(patch)) == ["new/mod.py", "old.py"]


def test_hunk_found_at_another_offset():
    old = "a\nb\nc\n"
    patch = make_patch({"f": old}, {"f": "a\nB\nc\n"})
    shifted = "header 1\nheader 2\n" + old
    assert apply_patch(patch, {"f": shifted}.get)["f"] == "header 1\nheader 2\na\nB\nc\n"


def test_trailing_whitespace_tolerated_in_second_pass():
    patch = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n keep\n-old\n+new\n"
    assert apply_patch(patch, {"f": "keep   \nold\n"}.get)["f"] == "keep   \nnew\n"


def test_patch_without_git_headers_and_wrong_counts():
    patch = "--- f.py\n+++ f.py\n@@ -1,9 +1,9 @@\n a = 1\n-b = 2\n+b = 3\n"
    assert apply_patch(patch, {"f.py": "a = 1\nb = 2\n"}.get) == {"f.py": "a = 1\nb = 3\n"}


def test_empty_context_line_without_space():
    patch = "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n x\n\n-y\n+z\n"
    assert apply_patch(patch, {"f": "x\n\ny\n"}.get)["f"] == "x\n\nz\n"


def test_hunk_that_does_not_apply_names_the_hunk():
    patch = make_patch({"f": "a\nb\n"}, {"f": "a\nc\n"})
    with pytest.raises(PatchError, match=r"hunk #1 .* of f does not apply"):
        apply_patch(patch, {"f": "totally\ndifferent\n"}.get)


def test_missing_file_and_existing_target():
    patch = make_patch({"f": "a\n"}, {"f": "b\n"})
    with pytest.raises(PatchError, match="no such file"):
        apply_patch(patch, {}.get)
    create = make_patch({}, {"f": "b\n"})
    with pytest.raises(PatchError, match="already exists"):
        apply_patch(create, {"f": "a\n"}.get)


@pytest.mark.parametrize(
    "text,match",
    [
        ("just some text\n", "no file changes"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @@\n?bad\n", "unexpected"),
        ("--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "bad path"),
        ("--- /dev/null\n+++ /dev/null\n", "both sides"),
    ],
)
def test_malformed_patches(text, match):
    with pytest.raises(PatchError, match=match):
        parse_patch(text)


def test_all_or_nothing():
    patch = make_patch({"a": "1\n", "b": "2\n"}, {"a": "one\n", "b": "two\n"})
    with pytest.raises(PatchError):
        apply_patch(patch, {"a": "1\n", "b": "changed\n"}.get)


def test_no_newline_at_end_of_file_marker():
    patch = make_patch({"f": "a\nb"}, {"f": "a\nc"})
    assert "\\ No newline at end of file" in patch
    assert apply_patch(patch, {"f": "a\nb"}.get)["f"] == "a\nc"


def test_added_lines():
    patch = make_patch({"m.py": "x = 1\n"}, {"m.py": "x = 1\ny = 42\n"})
    assert added_lines(patch) == {"m.py": ["y = 42\n"]}
