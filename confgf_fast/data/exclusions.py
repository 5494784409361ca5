"""Where the molecules never to train on are found: the project's shared data directory.

The benchmarks are drawn from three files (the QM9 held-out SMILES, the drug test SMILES and the 10
GEOM-Drugs molecules); every training-data builder excludes their molecules (data/build.py matches
them by stereo-free canonical SMILES). The files live in the project's `shared/` directory, which
is not part of the package: it is $CONFGF_FAST_SHARED when set, else `../shared` beside the git
checkout the package runs from (a development install). An installed wheel has neither, and the
builders then refuse to run unless the files are named (--exclude / --heldout) or exclusion is
switched off explicitly: a default that silently trained on benchmark molecules would be worse.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_ENV = "CONFGF_FAST_SHARED"
QM9_HELDOUT = "data/qm9_heldout_smiles.csv"
DEFAULT_EXCLUSIONS = ("data/drugs_test_smiles.csv", QM9_HELDOUT, "fixtures/geom_drugs_10.sdf")


def shared_dir() -> Path | None:
    """$CONFGF_FAST_SHARED, else ../shared beside the git checkout of this package; None if neither
    exists."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return Path(env) if Path(env).is_dir() else None
    for parent in Path(__file__).resolve().parents:
        if (parent / ".git").exists():
            shared = parent.parent / "shared"
            return shared if shared.is_dir() else None
    return None


def default_exclusion_files() -> list[Path]:
    """The DEFAULT_EXCLUSIONS files of shared_dir() that exist ([] without one)."""
    shared = shared_dir()
    return [] if shared is None else [shared / rel for rel in DEFAULT_EXCLUSIONS if (shared / rel).is_file()]


def default_qm9_heldout() -> Path | None:
    """shared_dir()'s QM9 held-out SMILES, if there is one."""
    shared = shared_dir()
    return shared / QM9_HELDOUT if shared is not None and (shared / QM9_HELDOUT).is_file() else None
