"""What the installed package carries: setup.py's package selection, run for real.

A wheel build compiles the extension (minutes); the package selection is setuptools' build_py step
alone, which copies exactly the modules and package data a wheel gets into a build directory
(~2 s, nothing compiled). Every subpackage of confgf_fast/ (and kernels/, installed as
confgf_fast.kernels) must arrive with all its modules: a subpackage directory that find_packages
does not pick up (no __init__.py, or left out of `packages=`) would install without it and fail
only at a user's first import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# source root -> where its files land in the installed package
SOURCES = {REPO / "confgf_fast": Path("confgf_fast"), REPO / "kernels": Path("confgf_fast/kernels")}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build_py")
    env = {k: v for k, v in os.environ.items() if k != "FORCE_CUDA"}
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _sources() -> dict[Path, Path]:
    """{installed path: source file} of every .py file of the package's source trees."""
    out = {}
    for root, dest in SOURCES.items():
        for path in root.rglob("*.py"):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts or (root.name == "confgf_fast" and rel.parts[0] == "kernels"):
                continue
            out[dest / rel] = path
    return out


def test_every_module_of_every_subpackage_is_installed(built):
    sources = _sources()
    subpackages = {p.parent for p in sources}
    assert Path("confgf_fast/ops") in subpackages and Path("confgf_fast/kernels") in subpackages
    missing = sorted(str(p) for p in sources if not (built / p).is_file())
    assert not missing, f"modules setup.py would not install: {missing}"
    no_init = sorted(str(d) for d in subpackages if d / "__init__.py" not in sources)
    assert not no_init, f"package directories without __init__.py: {no_init}"
    extra = sorted(str(p.relative_to(built)) for p in built.rglob("*.py") if p.relative_to(built) not in sources)
    assert not extra, f"installed modules with no source: {extra}"


def test_weights_and_model_card_are_package_data(built):
    weights = sorted(p.name for p in (REPO / "confgf_fast" / "weights").glob("*.pt"))
    assert weights, "no shipped weights found"
    for name in [*weights, "MODEL_CARD.md"]:
        assert (built / "confgf_fast" / "weights" / name).is_file(), f"weights/{name} not installed"
    data = sorted(str(p.relative_to(built)) for p in built.rglob("*") if p.is_file() and p.suffix != ".py")
    assert data == sorted(f"confgf_fast/weights/{n}" for n in [*weights, "MODEL_CARD.md"]), data
