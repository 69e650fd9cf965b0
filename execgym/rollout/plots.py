"""PNG plots of a baseline run: per env, every agent's success rate and reward components.

``execgym run --out DIR`` writes one ``<env>__components.png`` per env next to the trajectories.

Example:
    >>> import tempfile, pathlib
    >>> from execgym.rollout.episode import EpisodeResult
    >>> def ep(outcome, fmt):
    ...     return EpisodeResult("t", 0, 1, outcome, outcome, True, False, 0.1, {"format": fmt})
    >>> results = {("execgym/Toy-v0", "oracle"): [ep(1.0, 1.0)] * 3, ("execgym/Toy-v0", "random"): [ep(0.0, 0.5)]}
    >>> [p.name for p in plot_run(results, tempfile.mkdtemp())]
    ['Toy-v0__components.png']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from execgym.rollout.episode import EpisodeResult

__all__ = ["LOWER_IS_BETTER", "component_stats", "plot_reward_components", "plot_run", "reward_components_figure"]

# components where less is better (CAD's errors and distances); the plots and the report mark them with ↓
LOWER_IS_BETTER = frozenset({"bbox_error", "chamfer", "volume_error"})


def component_stats(results: Sequence[EpisodeResult]) -> dict[str, dict[str, float]]:
    """Per metric (``success`` and each component an episode reported): mean, the 95% interval, how many episodes
    reported it, and whether it is a rate (every value in 0..1) or a count. Errored episodes are left out; a
    component no episode reported is absent, not 0.

    ``success`` uses the Wilson interval, as the results table does; components use mean ± 1.96 standard errors.

    Example:
        >>> ok = EpisodeResult("t", 0, 3, 1.0, 1.0, True, False, 0.1, {"format": 3.0})
        >>> no = EpisodeResult("t", 1, 2, 0.0, 0.0, True, False, 0.1, {"format": 2.0, "iou": 0.5})
        >>> stats = component_stats([ok, no])
        >>> stats["success"]["mean"], stats["format"]["rate"], stats["iou"]["n"]
        (0.5, 0.0, 1.0)
    """
    from execgym.rollout.runner import wilson_interval

    scored = [r for r in results if r.infra_error is None and r.agent_error is None]
    out: dict[str, dict[str, float]] = {}
    if scored:
        wins = sum(r.outcome >= 1.0 for r in scored)
        lo, hi = wilson_interval(wins, len(scored))
        out["success"] = {"mean": wins / len(scored), "lo": lo, "hi": hi, "n": float(len(scored)), "rate": 1.0}
    for key in sorted({k for r in scored for k in r.reward_components}):
        values = np.array([float(r.reward_components[key]) for r in scored if key in r.reward_components])
        mean = float(values.mean())
        half = 1.96 * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0
        is_rate = bool(np.all((values >= 0.0) & (values <= 1.0)))
        lo, hi = mean - half, mean + half
        if is_rate:
            lo, hi = max(0.0, lo), min(1.0, hi)
        out[key] = {"mean": mean, "lo": lo, "hi": hi, "n": float(len(values)), "rate": float(is_rate)}
    return out


def reward_components_figure(env_id: str, results_by_agent: Mapping[str, Sequence[EpisodeResult]]) -> Any:
    """The figure for one env: per agent, the success rate and each component's mean per episode (summed over
    its steps), rates (0..1 per episode) and counts (``format``, ``calls``: up to one per turn) on separate axes.

    Components where lower is better (:data:`LOWER_IS_BETTER`) are hatched and marked ↓; a component an agent
    never reported has no bar (``n/a``); every bar carries its value, so a 0 is visible; error bars are 95%
    intervals, Wilson for success (the table's), mean ± 1.96 SE for components. Episodes with an infra or agent
    error are left out (the legend says how many)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    agents = list(results_by_agent)
    stats = {a: component_stats(rs) for a, rs in results_by_agent.items()}
    keys = sorted({k for st in stats.values() for k in st if k != "success"})
    # a metric is a rate only when every agent's every episode kept it in 0..1
    rates = ["success", *[k for k in keys if all(st[k]["rate"] for st in stats.values() if k in st)]]
    counts = [k for k in keys if k not in rates]
    panels = [(rates, "rate per episode (0..1)")] + ([(counts, "count per episode (summed over turns)")]
                                                      if counts else [])
    widths = [max(2, len(m)) for m, _ in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 0.55 * sum(widths) * max(1, len(agents)) ** 0.5 + 3),
                                                      4.4), gridspec_kw={"width_ratios": widths}, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(1, len(agents))
    for ax, (metrics, ylabel) in zip(axes[0], panels):
        x = np.arange(len(metrics))
        top = 1.0 if metrics is rates else max([st[k]["hi"] for st in stats.values() for k in metrics if k in st]
                                               + [1.0])
        for i, agent in enumerate(agents):
            st = stats[agent]
            offset = x + (i - (len(agents) - 1) / 2) * width
            for xi, key in zip(offset, metrics):
                if key not in st:
                    ax.text(xi, 0.02 * top, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="grey")
                    continue
                m = st[key]
                ax.bar(xi, m["mean"], width, color=colors[i % len(colors)], edgecolor="black", linewidth=0.4,
                       hatch="//" if key in LOWER_IS_BETTER else None,
                       yerr=[[m["mean"] - m["lo"]], [m["hi"] - m["mean"]]], capsize=2, error_kw={"linewidth": 0.8})
                ax.text(xi, m["hi"] + 0.02 * top, f"{m['mean']:.2g}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{k} ↓" if k in LOWER_IS_BETTER else k for k in metrics], rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, (1.0 if metrics is rates else top) * 1.18)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
    handles = []
    for i, agent in enumerate(agents):
        n = int(stats[agent]["success"]["n"]) if "success" in stats[agent] else 0
        errored = len(results_by_agent[agent]) - n
        handles.append(Patch(facecolor=colors[i % len(colors)], edgecolor="black", linewidth=0.4,
                             label=f"{agent} (n={n}" + (f", {errored} errored, not shown)" if errored else ")")))
    fig.legend(handles=handles, fontsize="small", loc="upper right", ncol=len(handles), frameon=False)
    fig.suptitle(f"{env_id}: success and reward components", x=0.01, ha="left")
    fig.text(0.01, 0.01, "error bars: 95% interval (success: Wilson, as in the table; components: mean ± 1.96 SE)"
             + ("; ↓ hatched: lower is better" if any(k in LOWER_IS_BETTER for k in keys) else "")
             + "; n/a: not reported", fontsize=7, color="dimgrey")
    fig.tight_layout(rect=(0, 0.04, 1, 0.94))
    return fig


def plot_reward_components(env_id: str, results_by_agent: Mapping[str, Sequence[EpisodeResult]],
                           path: str | Path) -> Path:
    """:func:`reward_components_figure` saved as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = reward_components_figure(env_id, results_by_agent)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_run(results: Mapping[tuple[str, str], Sequence[EpisodeResult]], out_dir: str | Path) -> list[Path]:
    """One ``<env>__components.png`` per env in ``out_dir``; ``results`` maps ``(env_id, agent)`` to episodes."""
    by_env: dict[str, dict[str, Sequence[EpisodeResult]]] = {}
    for (env_id, agent), rs in results.items():
        by_env.setdefault(env_id, {})[agent] = rs
    out = Path(out_dir)
    return [plot_reward_components(env_id, agents, out / f"{env_id.split('/')[-1]}__components.png")
            for env_id, agents in by_env.items()]
