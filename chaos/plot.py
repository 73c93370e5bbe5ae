"""A timeline a person can read at a glance: operations per second, fault windows shaded."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bazar import plotting
from bazar.chaos.history import Operation

COLOURS = {"ok": "#2e7d32", "fail": "#c62828", "unknown": "#f9a825"}
MAX_LABELLED_FAULTS = 20


def timeline(history: Sequence[Operation], faults: Sequence[dict], path: Path) -> bool:
    """Write a PNG: per-second counts of ok / failed / unknown operations, by invocation time.

    False, with nothing written, when matplotlib is not installed (the "tools" extra).
    """
    plt = plotting.pyplot()
    if plt is None:
        return False
    end = max([int(op.start) + 1 for op in history] + [int(f.get("end") or 0) + 1 for f in faults] + [1])
    seconds = list(range(end))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    bottom = [0] * end
    for outcome in ("ok", "fail", "unknown"):
        counts = Counter(int(op.start) for op in history if op.outcome == outcome)
        heights = [counts.get(s, 0) for s in seconds]
        ax.bar(seconds, heights, bottom=bottom, width=1.0, align="edge", color=COLOURS[outcome],
               label=outcome, linewidth=0)
        bottom = [b + h for b, h in zip(bottom, heights)]
    top = max(bottom + [1])
    label = len(faults) <= MAX_LABELLED_FAULTS  # beyond that the labels overlap into noise
    for fault in faults:
        start, stop = fault["start"], fault.get("end") or end
        ax.axvspan(start, stop, color="#90a4ae", alpha=0.3, linewidth=0)
        if label:
            ax.text(start, top * 1.02, fault["kind"], fontsize=8, rotation=20, va="bottom")
    ax.set_xlim(0, end)
    ax.set_ylim(0, top * 1.25)
    ax.set_xlabel("seconds since the workload started (operations by invocation time)")
    ax.set_ylabel("operations per second")
    ax.set_title(f"bazar chaos: operations and {len(faults)} fault windows (shaded)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
