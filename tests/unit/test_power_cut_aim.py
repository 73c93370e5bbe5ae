"""What the chaos power cut looks at before it strikes (`consensus.storage.not_yet_durable`)
and how the chaos summary reports what its power cuts dropped (`chaos.runner.power_cut_line`)."""
from __future__ import annotations

from bazar.chaos.nemesis import FaultWindow
from bazar.chaos.runner import power_cut_line
from bazar.consensus.storage import POWER_CUT_ENV, not_yet_durable, power_cut, record_durable


def test_bytes_not_yet_durable_are_what_a_power_cut_would_drop(tmp_path, monkeypatch):
    root, data = tmp_path / "durable", tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv(POWER_CUT_ENV, str(root))
    journal = data / "journal.bin"
    journal.write_bytes(b"x" * 100)
    record_durable(journal)
    assert not_yet_durable(root, [data]) == {}
    with journal.open("ab") as file:
        file.write(b"y" * 30)                       # written, not yet fsynced
    (data / "state.tmp-1").write_bytes(b"z" * 7)  # a file never made durable
    pending = not_yet_durable(root, [data])
    assert pending == {str(journal): 30, str(data / "state.tmp-1"): 7}
    assert journal.stat().st_size == 130            # looking changed nothing
    assert power_cut(root, [data]) == pending


def window(kind: str, lost: int | None) -> FaultWindow:
    return FaultWindow(kind, 1.0, 5.0, lost_bytes=lost)


def test_the_summary_counts_the_power_cuts_that_dropped_bytes():
    windows = [window("kill", None), window("power-cut", 0), window("power-cut", 273)]
    assert power_cut_line(windows) == ("power cuts: 1 of 2 dropped bytes that were not yet durable "
                                       "(273 bytes in all)")


def test_the_summary_says_plainly_when_no_power_cut_dropped_anything():
    line = power_cut_line([window("power-cut", 0), window("power-cut", 0)])
    assert line.startswith("power cuts: NONE of 2 dropped bytes that were not yet durable")
    assert power_cut_line([window("kill", None)]) is None
