"""``execgym run --act-timeout``: an agent whose model server never answers cannot stall a run; every such
episode is an agent error (``AgentTimeout``), counted apart, and a run where all of them failed exits non-zero."""

from __future__ import annotations

import json
import socket

import pytest

from execgym.cli import main


@pytest.fixture
def silent_server():
    """A loopback socket that accepts connections and never answers (a hung model server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()


def test_a_hung_model_server_is_an_agent_timeout_and_the_run_exits_nonzero(silent_server, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--env", "TextToSQL", "--agent", "openai", "--episodes", "2", "--act-timeout", "1.5",
                 "--agent-arg", f"base_url={silent_server}", "--agent-arg", "model=m", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert "AgentTimeout" in err
    (row,) = json.loads((out / "summary.json").read_text())
    assert row["agent_errors"] == 2 and row["infra_errors"] == 0
    assert row["success_rate"] is None


@pytest.mark.parametrize("bad", ["abc", "-1", "inf"])
def test_act_timeout_rejects_bad_values_in_one_line(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--env", "TextToSQL", "--agent", "oracle", "--episodes", "1", "--act-timeout", bad])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "--act-timeout" in err and "Traceback" not in err
