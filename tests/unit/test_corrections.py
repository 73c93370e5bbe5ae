"""The corrections index (consensus/corrections.py) is complete, and every test it names exists."""
from __future__ import annotations

import ast
from pathlib import Path

from bazar import consensus  # noqa: F401  installs every correction
from bazar.consensus import corrections, patching

ROOT = Path(__file__).resolve().parents[2]


def test_every_installed_correction_is_in_the_index_and_nothing_else():
    installed = {(patch.owner, patch.name) for patch in patching.applied()}
    listed = [(c.owner, c.name) for c in corrections.CORRECTIONS]
    assert len(listed) == len(set(listed)), "an entry is listed twice"
    assert installed - set(listed) == set(), "installed but not in consensus/corrections.py"
    assert set(listed) - installed == set(), "listed in consensus/corrections.py but never installed"


def test_every_named_test_exists():
    missing = []
    for correction in corrections.CORRECTIONS:
        assert correction.rule and correction.caught_by and correction.tests, correction
        for test in correction.tests:
            path, _, function = test.partition("::")
            tree = ast.parse((ROOT / path).read_text())
            names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
            if function not in names:
                missing.append(test)
    assert missing == []


def test_the_table_joins_each_installed_function_with_its_digest_and_rule():
    rows = corrections.table()
    assert len(rows) == len(patching.applied())
    for row in rows:
        assert len(row["digest"]) == 64 and row["rule"] and row["tests"], row
    assert "pysyncobj.syncobj.SyncObj._SyncObj__onMessageReceived" in {row["replaces"] for row in rows}


def test_bazar_corrections_prints_the_table_as_json():
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "bazar", "corrections", "--json"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    assert [row["replaces"] for row in json.loads(out)] == [row["replaces"] for row in corrections.table()]
