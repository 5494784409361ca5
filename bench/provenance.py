"""Provenance of a result file: git commit, dirty flag, command line, machine, date.

Every result JSON under bench/results records this block (DESIGN.md: results you can trace).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def provenance(device: str = "cpu") -> dict:
    """{git_commit, git_dirty, command, machine, date}. git_dirty counts tracked files that differ
    from the commit (untracked files are ignored: results being written are untracked)."""
    import torch

    dirty = _git("status", "--porcelain", "--untracked-files=no")
    cpu = platform.processor() or platform.machine()
    return {
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_dirty": bool(dirty),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads, device {device}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: str | Path, obj: dict) -> None:
    """Write a result file (parent folders created; non-JSON values as str)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, default=str))
