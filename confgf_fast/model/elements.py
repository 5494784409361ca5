"""Which molecules the model may be asked about: the element and heavy-atom policy, in one place.

RDKit-free (atomic numbers in, messages out), so SMILES / Mol inputs (prepare.py) and MolGraph
inputs (tensors.generate_tensors) are judged by the same rules:

- heavy atom: atomic number > 1 (neither hydrogen nor a dummy atom: RDKit's GetNumHeavyAtoms);
  more than `max_heavy_atoms` of them (default DEFAULT_MAX_HEAVY_ATOMS; 0 / None: no limit) is an
  error, checked before the O(n^2) graph is built;
- an atomic number outside the model's embedding table (Z >= num_atom_types) is always an error;
- an element absent from the model's training data (`trained_elements` of the checkpoint; QM9's
  H, C, N, O, F for checkpoints that do not record it) is an error unless allow_unknown_elements,
  and then a warning;
- a lone atom needs no model (it is placed at the origin), so any element is fine;
- with several sets of weights (e.g. the shipped QM9 and drug-like models), each molecule goes to
  the first whose training data covers both its elements and its size, else to the covering-elements
  one trained on the largest molecules, else to the last (whose vocabulary then refuses or warns as
  above): choose_model. So a QM9-size molecule keeps the QM9 model and a drug-like one gets a model
  that has seen sulfur, halogens and 26-atom molecules.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import NUM_ATOM_TYPES
from .loaded import LoadedModel

QM9_ELEMENTS = (1, 6, 7, 8, 9)  # H, C, N, O, F: what checkpoints without `trained_elements` were trained on
DEFAULT_MAX_HEAVY_ATOMS = 100


def heavy_atom_mask(z: Tensor) -> Tensor:
    """[n] bool: which atoms of `z` ([n] atomic numbers) are heavy (Z > 1, as RDKit counts them)."""
    return z > 1


def num_heavy_atoms(z: Tensor | Iterable[int]) -> int:
    """Heavy atoms among the atomic numbers `z` (see heavy_atom_mask)."""
    z = z if isinstance(z, Tensor) else torch.tensor(list(z), dtype=torch.long)
    return int(heavy_atom_mask(z).sum())


def size_error(num_heavy: int, max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS) -> str | None:
    """Why a molecule with `num_heavy` heavy atoms is too large, or None (0 / None: no limit)."""
    if max_heavy_atoms and num_heavy > max_heavy_atoms:
        return f"too large: {num_heavy} heavy atoms, the limit is {max_heavy_atoms} (max_heavy_atoms=0 lifts it)"
    return None


def element_names(zs: Iterable[int]) -> str:
    """'C, Cl' for atomic numbers (sorted); RDKit's symbols where RDKit is installed, else 'Z=17'."""
    try:
        from rdkit import Chem

        table = Chem.GetPeriodicTable()

        def name(z: int) -> str:
            return "*" if z == 0 else table.GetElementSymbol(z)
    except ImportError:  # a GPU box without RDKit: atomic numbers are still unambiguous
        def name(z: int) -> str:
            return f"Z={z}"
    return ", ".join(name(int(z)) for z in sorted(zs))


def check_elements(zs: Collection[int], trained_elements: Container[int] = QM9_ELEMENTS, *,
                   allow_unknown_elements: bool = False,
                   num_atom_types: int = NUM_ATOM_TYPES) -> tuple[str | None, list[str]]:
    """(error or None, warnings) for a molecule of more than one atom with atomic numbers `zs`."""
    zs = set(int(z) for z in zs)
    beyond = {z for z in zs if z < 0 or z >= num_atom_types}
    if beyond:
        return (f"element(s) {element_names(beyond)} beyond the model's atom vocabulary (Z < {num_atom_types})",
                [])
    unknown = {z for z in zs if z not in trained_elements}
    if not unknown:
        return None, []
    if not allow_unknown_elements:
        known = element_names(z for z in range(num_atom_types) if z in trained_elements)
        return (f"element(s) {element_names(unknown)} not in the model's training data ({known}); "
                "allow_unknown_elements=True samples it anyway, with an untrained embedding", [])
    return None, [f"element(s) {element_names(unknown)} never seen in training: expect poor geometry"]


def model_vocabulary(loaded: LoadedModel, trained_elements: Iterable[int] | None = None,
                     ) -> tuple[frozenset[int], int]:
    """(atomic numbers the model was trained on, size of its atom embedding table).

    trained_elements overrides the model's own (loaded.meta.trained_elements, from its checkpoint);
    a model that records none is taken to be QM9's (H, C, N, O, F).
    """
    own = loaded.meta.trained_elements
    known = frozenset(trained_elements if trained_elements is not None else own if own is not None else QM9_ELEMENTS)
    # A custom score model (tests' oracles) need not be a ScoreNet with a config: the full table.
    num_atom_types = getattr(getattr(loaded.model, "config", None), "num_atom_types", NUM_ATOM_TYPES)
    return known, num_atom_types


@dataclass(frozen=True)
class Coverage:
    """What one set of weights was trained on: its elements (atomic numbers), the heavy atoms of its
    largest training molecule (None: unknown, taken as no limit) and its embedding table size."""

    elements: frozenset[int]
    max_heavy_atoms: int | None
    num_atom_types: int = NUM_ATOM_TYPES

    @classmethod
    def of(cls, loaded: LoadedModel, trained_elements: Iterable[int] | None = None) -> Coverage:
        """The coverage of a model as its checkpoint describes it (model_vocabulary's elements;
        meta.trained_max_heavy_atoms, None for a model built in code)."""
        known, num_atom_types = model_vocabulary(loaded, trained_elements)
        return cls(known, loaded.meta.trained_max_heavy_atoms, num_atom_types)

    def knows(self, zs: Collection[int]) -> bool:
        return all(int(z) in self.elements for z in zs)

    def fits(self, num_heavy: int) -> bool:
        return self.max_heavy_atoms is None or num_heavy <= self.max_heavy_atoms


def choose_model(zs: Collection[int], num_heavy: int, coverages: Sequence[Coverage]) -> int:
    """Index of the weights that sample a molecule with atomic numbers `zs` and `num_heavy` heavy atoms.

    The first of `coverages` that knows every element and was trained on molecules at least this
    large; else, of those that know every element, the one trained on the largest molecules (the
    molecule then gets the beyond-trained-size warning); else the last one (its element check then
    refuses the molecule, or warns with allow_unknown_elements). One coverage: always 0.
    """
    if not coverages:
        raise ValueError("no weights to choose from")
    knowing = [i for i, c in enumerate(coverages) if c.knows(zs)]
    for i in knowing:
        if coverages[i].fits(num_heavy):
            return i
    if knowing:
        return max(knowing, key=lambda i: coverages[i].max_heavy_atoms or 0)
    return len(coverages) - 1


__all__ = ["DEFAULT_MAX_HEAVY_ATOMS", "QM9_ELEMENTS", "Coverage", "check_elements", "choose_model", "element_names",
           "heavy_atom_mask", "model_vocabulary", "num_heavy_atoms", "size_error"]
