"""`python -m bazar.bench.soak` runs end to end on a tiny load and reports what it sampled.

Only the mechanics: the soak's point (RSS flat once retention applies) is a
measurement, read from its output by a person, never asserted on a shared machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_soak_samples_rss_and_remembered_outcomes(tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "-m", "bazar.bench.soak", "--purchases", "200", "--clients", "4",
                           "--retention", "1", "--every", "100", "--catalog", "1", "--order", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["statuses"] == {"200": 200}
    assert [s["purchases"] for s in result["samples"]][-1] == 200 and len(result["samples"]) >= 3
    assert all(set(s["rss_mib"]) == {"catalog1", "order1"} and all(v > 0 for v in s["rss_mib"].values())
               for s in result["samples"])
    assert all(isinstance(s["orders"], int) for s in result["samples"])
    assert "(RSS MiB)" in done.stdout and "RSS growth after 2x retention" in done.stdout
