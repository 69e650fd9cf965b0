"""The run plots: rates and counts apart, lower-is-better marked, absent components absent, labelled intervals."""

from __future__ import annotations

from pathlib import Path

import pytest

from execgym.rollout.episode import EpisodeResult
from execgym.rollout.plots import LOWER_IS_BETTER, component_stats, plot_run, reward_components_figure
from execgym.rollout.runner import summarise

pytest.importorskip("matplotlib")


def _ep(outcome: float, components: dict[str, float], **kw: object) -> EpisodeResult:
    return EpisodeResult("t", 0, 20, outcome, outcome, True, False, 0.1, components, **kw)  # type: ignore[arg-type]


def _results() -> dict[str, list[EpisodeResult]]:
    oracle = [_ep(1.0, {"format": 2.0, "calls": 2.0, "iou": 1.0, "bbox_error": 0.0}) for _ in range(5)]
    # random never reaches grading: it reports no iou and no bbox_error; it makes 20 well-formed calls
    random = [_ep(0.0, {"format": 20.0, "calls": 20.0}) for _ in range(4)]
    random.append(_ep(0.0, {}, infra_error="sandbox died"))
    return {"oracle": oracle, "random": random}


def _bars(ax: object) -> list[object]:
    from matplotlib.patches import Rectangle

    return [p for p in ax.patches if isinstance(p, Rectangle)]  # type: ignore[attr-defined]


def test_rates_and_counts_on_separate_axes() -> None:
    fig = reward_components_figure("execgym/Toy-v0", _results())
    rates_ax, counts_ax = fig.axes
    rate_labels = [t.get_text() for t in rates_ax.get_xticklabels()]
    count_labels = [t.get_text() for t in counts_ax.get_xticklabels()]
    assert rate_labels == ["success", "bbox_error ↓", "iou"]
    assert count_labels == ["calls", "format"]
    assert rates_ax.get_ylim()[1] < 1.5  # the 0..1 axis is not stretched by the counts of 20
    assert "rate" in rates_ax.get_ylabel() and "count" in counts_ax.get_ylabel()
    assert max(b.get_height() for b in _bars(counts_ax)) == 20.0


def test_absent_components_are_absent_and_lower_is_better_is_hatched() -> None:
    fig = reward_components_figure("execgym/Toy-v0", _results())
    rates_ax = fig.axes[0]
    bars = _bars(rates_ax)
    # success for both agents, iou and bbox_error only for the oracle: 4 bars, not 6 with two fake zeros
    assert len(bars) == 4
    assert sum(1 for b in bars if b.get_hatch()) == 1  # bbox_error
    assert [t.get_text() for t in rates_ax.texts].count("n/a") == 2
    # every bar is labelled with its value, so a 0 (random's success) is visible
    assert "0" in [t.get_text() for t in rates_ax.texts]
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "Wilson" in notes and "1.96 SE" in notes and "lower is better" in notes
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "random (n=4, 1 errored, not shown)" in legend and "oracle (n=5)" in legend
    assert {"bbox_error", "chamfer", "volume_error"} <= LOWER_IS_BETTER


def test_success_error_bar_is_the_tables_wilson_interval() -> None:
    results = [_ep(1.0, {}) for _ in range(3)] + [_ep(0.0, {}) for _ in range(7)]
    stats = component_stats(results)["success"]
    lo, hi = summarise("execgym/Toy-v0", "a", results).success_ci95
    assert (stats["lo"], stats["hi"]) == (lo, hi)
    fig = reward_components_figure("execgym/Toy-v0", {"a": results})
    from matplotlib.collections import LineCollection

    segments = [seg for c in fig.axes[0].collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    assert any(abs(seg[0][1] - lo) < 1e-9 and abs(seg[1][1] - hi) < 1e-9 for seg in segments)


def test_plot_run_writes_one_png_per_env(tmp_path: Path) -> None:
    paths = plot_run({("execgym/Toy-v0", a): rs for a, rs in _results().items()}, tmp_path)
    assert [p.name for p in paths] == ["Toy-v0__components.png"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
