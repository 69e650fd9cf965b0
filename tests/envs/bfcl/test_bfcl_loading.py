"""BFCL files are checked when loaded, not at reset(): a malformed entry is refused naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execgym.envs.bfcl.env import BFCLEnv
from execgym.envs.tooluse.loading import InvalidRow

from .entries import ENTRIES, write_bfcl


def _bfcl_with(tmp_path: Path, category: str, change) -> Path:
    root = write_bfcl(tmp_path)
    name = f"BFCL_v4_{category}.json"
    entries = [json.loads(line) for line in (root / name).read_text().splitlines()]
    change(entries)
    (root / name).write_text("".join(json.dumps(e) + "\n" for e in entries))
    return root / name


@pytest.mark.parametrize("change, expected", [
    (lambda es: es[1].update(function=["calculate_area"]), "function[0]: must be a function object"),
    (lambda es: es[1].update(function="calculate_area"), "function: must be a list of functions, got str"),
    (lambda es: es[1]["function"][0].pop("name"), "function[0].name: must be a string, got NoneType"),
    (lambda es: es[1].pop("id"), "id: must be a non-empty string or integer"),
    (lambda es: es[1].update(question="hi"), "question: must be a list"),
    (lambda es: es[1].update(question=[[{"role": "user"}]]), "question[0].content: must be a string"),
    (lambda es: es[1]["function"][0]["parameters"].update(properties=["radius"]),
     "function[0].parameters.properties: must be an object, got list"),
    (lambda es: es[1]["function"][0]["parameters"].update(required=["nope"]),
     "function[0].parameters.required: 'nope' is not one of its properties"),
    (lambda es: es[1]["function"].append(dict(es[1]["function"][0])),
     "function[1].name: 'math.circle_area' is given twice"),
])
def test_malformed_bfcl_entries_are_refused_at_load_with_file_and_line(tmp_path, change, expected):
    path = _bfcl_with(tmp_path, "simple_python", change)
    with pytest.raises(InvalidRow) as caught:
        BFCLEnv(dataset=f"bfcl:{path.parent}", split="simple")
    message = str(caught.value)
    assert message.startswith(f"{path}:2: entry") and expected in message and "\n" not in message, message


def test_bfcl_possible_answers_are_checked_too(tmp_path):
    root = write_bfcl(tmp_path)
    answers = root / "possible_answer" / "BFCL_v4_multiple.json"
    answers.write_text(json.dumps({"ground_truth": []}) + "\n")
    with pytest.raises(InvalidRow, match=rf"^{answers}:1: a possible answer needs an \"id\""):
        BFCLEnv(dataset=f"bfcl:{root}", split="multiple")
    gt = {"book_hotel": {"city": ["Rome"], "nights": [2], "colour": ["red"]}}
    answers.write_text(json.dumps({"id": "multiple_0", "ground_truth": [gt]}) + "\n")
    with pytest.raises(InvalidRow, match=r"BFCL_v4_multiple.json:1: entry 'multiple_0': no call can meet its "
                                         r"possible answer: .*colour"):
        BFCLEnv(dataset=f"bfcl:{root}", split="multiple")
    answers.write_text(json.dumps({"id": "multiple_0", "ground_truth": [{"book_hotel": {"city": "Rome"}}]}) + "\n")
    with pytest.raises(InvalidRow, match=r"ground_truth\[0\]\.book_hotel\.city: must be a list of possible values"):
        BFCLEnv(dataset=f"bfcl:{root}", split="multiple")


def test_bfcl_skip_invalid_rows_leaves_bad_entries_out_with_a_count(tmp_path):
    def change(es):
        es[0]["function"] = "calculate_triangle_area"
        es[2]["function"][0].pop("name")

    _bfcl_with(tmp_path, "simple_python", change)
    with pytest.warns(UserWarning, match=r"skipped 2 malformed entry\(s\) of .*BFCL_v4_simple_python.json"):
        env = BFCLEnv(dataset=f"bfcl:{tmp_path}", split="simple", skip_invalid_rows=True)
    assert env.tasks.ids() == [ENTRIES["simple_python"][1][0]["id"]]
    env.reset(options={"task_id": env.tasks.ids()[0]})
    *_, info = env.step(env.task.oracle[0])
    assert info["outcome"] == 1.0


def test_refusals_stay_on_one_line_whatever_the_file_holds(tmp_path):
    root = write_bfcl(tmp_path)
    answers = root / "possible_answer" / "BFCL_v4_multiple.json"
    gt = {"book_hotel": {"city": ["Rome"], "nights": [2], "note\nInjected": "not a list"}}
    answers.write_text(json.dumps({"id": "multiple_0", "ground_truth": [gt]}) + "\n")
    with pytest.raises(InvalidRow) as caught:
        BFCLEnv(dataset=f"bfcl:{root}", split="multiple")
    assert "\n" not in str(caught.value) and "note\\nInjected: must be a list" in str(caught.value)


def test_a_bfcl_file_with_a_huge_integer_is_one_line_naming_file_and_line(tmp_path):
    """BFCL shares read_rows: an integer over Python's 4,300-digit limit was a bare ValueError."""
    path = _bfcl_with(tmp_path, "simple_python", lambda es: es[1].update(extra="<n>"))
    path.write_text(path.read_text().replace('"<n>"', "9" * 5000))
    with pytest.raises(InvalidRow, match=rf"^{path}:2: entry: not valid JSON: an integer of 5000 digits"):
        BFCLEnv(dataset=f"bfcl:{path.parent}", split="simple")
