"""Plots are an extra: `bazar chaos` and `bazar bench` draw theirs with matplotlib, which
`pip install bazar` leaves out (replicas and images never need it; `pip install 'bazar[tools]'`
adds it). Without it a tool still runs, checks and writes every result; only the picture
is missing, and the tool says so in one line (`skipped_line`).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

TOOLS_EXTRA = "pip install 'bazar[tools]'"


def pyplot():
    """matplotlib.pyplot drawing to files (the Agg backend, no display needed), or None when
    matplotlib is not installed. A matplotlib that is installed but broken still raises."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def skipped_line(path: Path) -> str:
    """The one line a tool prints when it could not draw the plot `path`."""
    return f"{Path(path).name} not drawn: the plot needs matplotlib, {TOOLS_EXTRA}"
