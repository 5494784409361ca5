"""The result tables in README.md and bench/README.md are what bench/doc_tables.py generates from
the committed result files: a figure copied by hand, or a result file changed without
regenerating the docs, fails here."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_doc_tables_match_result_files():
    run = subprocess.run([sys.executable, str(REPO / "bench" / "doc_tables.py"), "--check"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr
