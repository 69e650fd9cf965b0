"""The kernel's wire format: base64 payloads and length-prefixed JSON messages on pipes."""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import numpy as np

PROTOCOL = 1
MAX_PART_BYTES = 48 * 1024 * 1024
OUTPUT_TAIL = 2000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def array_b64(array: np.ndarray, dtype: str) -> str:
    return b64(np.ascontiguousarray(array, dtype=dtype).tobytes())


def _read_tail(f: Any, limit: int = OUTPUT_TAIL) -> str:
    try:
        f.flush()
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        text = f.read().decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return ""
    if size > limit:
        text = f"[... {size - limit} bytes of output cut ...]\n" + text
    return text


def _write_message(fd: int, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        data = os.read(fd, min(n - got, 1 << 20))
        if not data:
            return None
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)
