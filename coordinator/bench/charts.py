"""The PNG charts of a benchmark run: cost by scenario, turns/s by worker processes.

Each cost bar is a run's cost over the in-process ideal under the same config (the
compression scenario and its baselines over the ideal that compresses too).

Drawn with matplotlib when it is installed (``pip install 'agent-cluster[bench]'``);
``--out`` checks for it before the run, not after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster.errors import ConfigError
from coordinator.bench.economics import BASELINES, COMPRESSING, PROMPT_PUSH_IDEAL, CostRun
from coordinator.bench.report import IDEAL, BenchResults

__all__ = ["check_charts_possible", "write_charts"]


def check_charts_possible() -> None:
    """Fail before a long run, not after it, when the charts cannot be drawn.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--out draws charts with matplotlib, which is not installed: "
            "pip install 'agent-cluster[bench]' (or run without --out)"
        ) from None


def _label(run: CostRun) -> str:
    if run.group == COMPRESSING and run.scenario in BASELINES:
        return f"{run.scenario}, compressing"
    return run.scenario


def _cost_ratio(run: CostRun, runs: list[CostRun]) -> float:
    """A run's cost over the in-process ideal of its group (compressing or not); its
    cost in USD when no such ideal ran."""
    ideal = next((r for r in runs if r.scenario == IDEAL and r.group == run.group), None)
    return run.cost_usd / (ideal.cost_usd if ideal and ideal.cost_usd else 1.0)


def _colour(run: CostRun) -> str:
    return "grey" if run.scenario in (*BASELINES, PROMPT_PUSH_IDEAL) else "tab:blue"


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Lay out, write and close one chart; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_charts(results: BenchResults, directory: Path) -> list[Path]:
    """The cost-scenario and scaling-curve charts as PNG files.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    check_charts_possible()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if results.costs:
        providers = list(dict.fromkeys(run.provider for run in results.costs))
        fig, axes = plt.subplots(1, len(providers), figsize=(6 * len(providers), 4), squeeze=False)
        for ax, provider in zip(axes[0], providers, strict=True):
            runs = [r for r in results.costs if r.provider == provider]
            bars = [(_label(r), _cost_ratio(r, runs), _colour(r)) for r in runs]
            ax.barh(
                [label for label, _, _ in bars],
                [ratio for _, ratio, _ in bars],
                color=[colour for _, _, colour in bars],
            )
            ax.axvline(1.01, color="tab:red", linestyle="--", linewidth=1)
            ax.set_xlabel("cost / in-process ideal of the same config (red: +1%)")
            ax.set_title(f"{provider}: prompt-cache cost by scenario")
            ax.invert_yaxis()
        written.append(_save(plt, fig, directory / "cost_scenarios.png"))
    if results.hot and results.hot.throughput:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, per in results.hot.throughput.items():
            if len(per) > 1:
                counts = sorted(per)
                ax.plot(counts, [per[n] for n in counts], marker="o", label=name)
        ax.set_xlabel("worker processes")
        ax.set_ylabel("turns/s (zero-latency model)")
        ax.set_title(f"Scaling: turns/s by workers ({results.hot.cpus} CPUs; no more workers run)")
        ax.legend()
        written.append(_save(plt, fig, directory / "scaling.png"))
    return written
