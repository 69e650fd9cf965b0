"""BFCL entries in BFCL's own file layout, written by the tests (the env's bundled sample holds the same)."""

from __future__ import annotations

import json
from pathlib import Path

AREA = {"name": "calculate_triangle_area", "description": "Area of a triangle.",
        "parameters": {"type": "dict", "properties": {
            "base": {"type": "integer", "description": "The base."},
            "height": {"type": "integer", "description": "The height."},
            "unit": {"type": "string", "description": "The unit. Default 'units'."}},
            "required": ["base", "height"]}}
CIRCLE = {"name": "math.circle_area", "description": "Area of a circle.",
          "parameters": {"type": "dict", "properties": {"radius": {"type": "float"},
                                                        "point": {"type": "tuple", "items": {"type": "integer"}}},
                         "required": ["radius"]}}
WEATHER = {"name": "get_weather", "description": "Current weather.",
           "parameters": {"type": "dict", "properties": {"city": {"type": "string"},
                                                         "unit": {"type": "string", "enum": ["c", "f"]}},
                          "required": ["city"]}}
BOOK = {"name": "book_hotel", "description": "Book a hotel.",
        "parameters": {"type": "dict", "properties": {
            "city": {"type": "string"}, "nights": {"type": "integer"},
            "guest": {"type": "dict", "properties": {"name": {"type": "string"}, "vip": {"type": "boolean"}}},
            "extras": {"type": "array", "items": {"type": "string"}}, "note": {"type": "any"}},
            "required": ["city", "nights"]}}

ENTRIES = {
    "simple_python": [
        ({"id": "simple_python_0", "question": [[{"role": "user", "content": "Area of a triangle, base 10 height 5?"}]],
          "function": [AREA]},
         [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]),
        ({"id": "simple_python_1", "question": [[{"role": "user", "content": "Area of a circle of radius 5?"}]],
          "function": [CIRCLE]},
         [{"math.circle_area": {"radius": [5.0], "point": [[1, 2], ""]}}]),
        ({"id": "simple_python_2", "question": [[{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Weather in New York?"}]],
          "function": [WEATHER]},
         [{"get_weather": {"city": ["New York, NY", "NYC"], "unit": ["", "f"]}}]),
    ],
    "multiple": [
        ({"id": "multiple_0", "question": [[{"role": "user", "content": "Book 2 nights in Rome for Ann, a VIP."}]],
          "function": [WEATHER, BOOK]},
         [{"book_hotel": {"city": ["Rome"], "nights": [2], "guest": [{"name": ["Ann"], "vip": [True]}],
                          "extras": ["", ["breakfast"]], "note": [""]}}]),
    ],
    "parallel": [
        ({"id": "parallel_0", "question": [[{"role": "user", "content": "Weather in Paris and in Oslo, in C?"}]],
          "function": [WEATHER]},
         [{"get_weather": {"city": ["Paris"], "unit": ["c"]}}, {"get_weather": {"city": ["Oslo"], "unit": ["c"]}}]),
    ],
    "parallel_multiple": [
        ({"id": "parallel_multiple_0", "question": [[{"role": "user", "content": "Weather in Rome; book 3 nights."}]],
          "function": [WEATHER, BOOK]},
         [{"get_weather": {"city": ["Rome"], "unit": ["", "c"]}},
          {"book_hotel": {"city": ["Rome"], "nights": [3], "guest": [""], "extras": [""], "note": [""]}}]),
    ],
    "irrelevance": [
        ({"id": "irrelevance_0", "question": [[{"role": "user", "content": "Who painted the Mona Lisa?"}]],
          "function": [AREA]}, None),
    ],
}


def write_bfcl(root: Path, version: str = "v4") -> Path:
    (root / "possible_answer").mkdir(parents=True, exist_ok=True)
    for category, rows in ENTRIES.items():
        name = f"BFCL_{version}_{category}.json"
        (root / name).write_text("".join(json.dumps(entry) + "\n" for entry, _ in rows))
        if rows[0][1] is not None:
            (root / "possible_answer" / name).write_text(
                "".join(json.dumps({"id": entry["id"], "ground_truth": gt}) + "\n" for entry, gt in rows))
    return root
