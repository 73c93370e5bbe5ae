"""The plots of `bazar chaos` and `bazar bench` are an extra (matplotlib, `bazar[tools]`):
without it every other result is written and one line says how to get the plot.

matplotlib is hidden by putting None in its sys.modules entry, which is what an
interpreter without it finds (tests/integration/test_wheel.py runs chaos from a wheel
really installed without it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from bazar import plotting
from bazar.bench import cli as bench_cli, report, runner
from bazar.chaos import plot
from bazar.chaos.history import Operation

REPO = Path(__file__).resolve().parents[2]
BENCH_RESULTS = REPO / "bench" / "results" / "results.json"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def without_matplotlib(monkeypatch):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def bench_results() -> dict:
    return json.loads(BENCH_RESULTS.read_text())


def test_bench_writes_its_json_and_table_without_matplotlib(without_matplotlib, tmp_path):
    paths = report.write(bench_results(), tmp_path)
    assert paths == {"json": tmp_path / "results.json", "markdown": tmp_path / "results.md"}
    assert json.loads(paths["json"].read_text())["targets"]
    assert "|" in paths["markdown"].read_text()  # the summary table
    assert not (tmp_path / report.PLOT_NAME).exists()


def test_bench_says_in_one_line_that_the_plot_needs_the_tools_extra(without_matplotlib, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.setattr(runner, "run", lambda settings: bench_results())  # no clusters here
    args = argparse.Namespace(quick=True, out=str(tmp_path))
    assert bench_cli._bench(None, args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if plotting.TOOLS_EXTRA in line] == [
        f"{report.PLOT_NAME} not drawn: the plot needs matplotlib, {plotting.TOOLS_EXTRA}"]
    assert f"json: {tmp_path / 'results.json'}" in printed


def test_bench_draws_its_plot_when_matplotlib_is_there(tmp_path):
    paths = report.write(bench_results(), tmp_path)
    assert paths["plot"] == tmp_path / report.PLOT_NAME
    assert paths["plot"].read_bytes()[:8] == PNG


def test_the_chaos_timeline_is_skipped_without_matplotlib_and_drawn_with_it(tmp_path, monkeypatch):
    history = [Operation(id=1, client=0, f="read", item=1, args={}, start=0.2, end=0.3, outcome="ok")]
    drawn = tmp_path / "drawn.png"
    assert plot.timeline(history, [], drawn) is True
    assert drawn.read_bytes()[:8] == PNG

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    skipped = tmp_path / "skipped.png"
    assert plot.timeline(history, [], skipped) is False
    assert not skipped.exists()
