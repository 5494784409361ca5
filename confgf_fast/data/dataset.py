"""Featurised conformer datasets: graphs + coordinates as plain tensors in one torch file.

The file needs no RDKit to load, so a GPU machine without RDKit can train from it. It is compact
(format 2): per molecule only atomic numbers and bonds are stored, and the extended graph (pairs
within 3 bonds) is rebuilt at load time by graph.extended_graph: QM9 is ~0.6 kB per molecule plus
12 bytes per atom per conformer.

In memory:
  graphs: PackedGraphs (z, atom_ptr, edge_index, edge_type, rev, edge_ptr; local indices)
  pos: [sum_c n_mol(c), 3] float32, conformer c's atoms at pos[conf_ptr[c]:conf_ptr[c+1]]
  conf_mol: [C] int64 molecule of each conformer (sorted);  conf_ptr: [C+1]
  smiles: list[str] (isomeric SMILES of each molecule);  meta: dict

On disk: only plain tensors, lists, dicts, str and numbers (meta is converted by checkpoint.to_plain
on save), read back with weights_only=True, so a dataset file someone shared cannot run code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from ..graph import GraphBatch, MolGraph, PackedGraphs, extended_graph, offsets
from ..model.checkpoint import UnsafeFileError, load_plain, to_plain

FORMAT_VERSION = 2


class DatasetFileError(ValueError):
    """A dataset file that cannot be used: unreadable, not plain tensors (refused unread, see
    checkpoint.load_plain), or of an unknown format. One line naming the file."""


class UnsafeDatasetError(DatasetFileError, UnsafeFileError):
    """A dataset file whose pickle asks for more than plain tensors and containers (it could run
    code)."""


@dataclass
class ConformerDataset:
    graphs: PackedGraphs
    pos: Tensor  # [P, 3]
    conf_mol: Tensor  # [C]
    conf_ptr: Tensor  # [C+1]
    smiles: list[str]
    meta: dict = field(default_factory=dict)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_parts(cls, graphs: Sequence[MolGraph], confs: Sequence[Tensor], smiles: Sequence[str],
                   meta: dict | None = None) -> ConformerDataset:
        """graphs[m]: MolGraph; confs[m]: [C_m, n_m, 3] conformers of molecule m."""
        conf_mol = torch.cat([torch.full((c.shape[0],), m, dtype=torch.long) for m, c in enumerate(confs)]) \
            if confs else torch.zeros(0, dtype=torch.long)
        sizes = torch.tensor([c.shape[1] for c in confs for _ in range(c.shape[0])], dtype=torch.long)
        conf_ptr = offsets(sizes)
        pos = torch.cat([c.reshape(-1, 3).float() for c in confs]) if confs else torch.zeros(0, 3)
        return cls(PackedGraphs(list(graphs)), pos, conf_mol, conf_ptr, list(smiles), dict(meta or {}))

    @classmethod
    def from_mols(cls, mols: Iterable, meta: dict | None = None) -> ConformerDataset:
        """RDKit Mols with explicit H and at least one 3D conformer each."""
        from rdkit import Chem

        from ..chem.molecule import conformer_positions, featurize

        graphs, confs, smiles = [], [], []
        for mol in mols:
            if mol is None or mol.GetNumConformers() == 0:
                continue
            graphs.append(featurize(mol))
            confs.append(conformer_positions(mol))
            smiles.append(Chem.MolToSmiles(Chem.RemoveHs(mol)))
        return cls.from_parts(graphs, confs, smiles, meta)

    @classmethod
    def from_sdf(cls, path: str | Path, meta: dict | None = None) -> ConformerDataset:
        """SDF records grouped into molecules: consecutive records with the same `smiles` property
        (or, without it, the same canonical SMILES and atom count) are conformers of one molecule."""
        from rdkit import Chem

        groups: list = []
        last_key = None
        for rec in Chem.SDMolSupplier(str(path), removeHs=False):
            if rec is None:
                continue
            key = (rec.GetProp("smiles") if rec.HasProp("smiles") else Chem.MolToSmiles(Chem.RemoveHs(rec)),
                   rec.GetNumAtoms())
            if key == last_key:
                groups[-1].AddConformer(rec.GetConformer(), assignId=True)
            else:
                groups.append(Chem.Mol(rec))
                last_key = key
        return cls.from_mols(groups, meta)

    @staticmethod
    def concat(parts: Sequence[ConformerDataset], meta: dict | None = None) -> ConformerDataset:
        graphs = [p.graphs.graph(i) for p in parts for i in range(len(p.graphs))]
        confs = [p.conformers(i) for p in parts for i in range(len(p.graphs))]
        smiles = [s for p in parts for s in p.smiles]
        return ConformerDataset.from_parts(graphs, confs, smiles, meta)

    # ---- access ---------------------------------------------------------------------------
    @property
    def num_molecules(self) -> int:
        return len(self.smiles)

    @property
    def num_conformers(self) -> int:
        return int(self.conf_mol.numel())

    def conformers(self, m: int) -> Tensor:
        """[C_m, n_m, 3] all conformers of molecule m."""
        # conf_mol is sorted (from_parts writes molecules in order), so m's conformers are contiguous.
        c0 = int(torch.searchsorted(self.conf_mol, m))
        c1 = int(torch.searchsorted(self.conf_mol, m, right=True))
        n = self.graphs.num_atoms(m)
        return self.pos[self.conf_ptr[c0]:self.conf_ptr[c1]].reshape(c1 - c0, n, 3)

    def subset(self, mol_ids: Sequence[int]) -> ConformerDataset:
        return ConformerDataset.from_parts(
            [self.graphs.graph(m) for m in mol_ids], [self.conformers(m) for m in mol_ids],
            [self.smiles[m] for m in mol_ids], self.meta)

    def at_graph_order(self, order: int) -> ConformerDataset:
        """The same molecules and conformers with every graph rebuilt at `order` (files hold
        ConfGF's order 3; a model of another ModelConfig.graph_order trains on this)."""
        return replace(self, graphs=self.graphs.at_order(order))

    def split(self, val_fraction: float, seed: int = 0) -> tuple[ConformerDataset, ConformerDataset]:
        """Split by molecule (all conformers of a molecule land on the same side)."""
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(self.num_molecules, generator=g).tolist()
        n_val = max(1, round(val_fraction * self.num_molecules)) if val_fraction > 0 else 0
        return self.subset(sorted(perm[n_val:])), self.subset(sorted(perm[:n_val]))

    def batch(self, conf_ids: Tensor) -> tuple[GraphBatch, Tensor]:
        """conf_ids: [G] -> (GraphBatch of those conformers, pos [N, 3])."""
        conf_ids = conf_ids.long()
        gb = self.graphs.batch(self.conf_mol[conf_ids])
        n = self.conf_ptr[conf_ids + 1] - self.conf_ptr[conf_ids]
        start = torch.repeat_interleave(self.conf_ptr[conf_ids], n)
        pos = self.pos[start + (torch.arange(int(n.sum())) - torch.repeat_interleave(gb.atom_ptr[:-1], n))]
        return gb, pos

    # ---- io -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the compact format 2 file: plain tensors, the SMILES list and meta (made plain by
        checkpoint.to_plain, which refuses what load could not read back)."""
        M = self.num_molecules
        bonds = [self.graphs.graph(m).bonds() for m in range(M)]
        nb = torch.tensor([b[1].numel() for b in bonds], dtype=torch.long)
        torch.save({
            "format_version": FORMAT_VERSION,
            "z": self.graphs.z.to(torch.uint8),
            "atom_ptr": self.graphs.atom_ptr,
            "bond_index": (torch.cat([b[0] for b in bonds], 1) if M else torch.zeros(2, 0)).to(torch.int16),
            "bond_type": (torch.cat([b[1] for b in bonds]) if M else torch.zeros(0)).to(torch.uint8),
            "bond_ptr": offsets(nb),
            "pos": self.pos.float(), "conf_mol": self.conf_mol.to(torch.int32), "conf_ptr": self.conf_ptr,
            "smiles": list(self.smiles), "meta": to_plain(self.meta, "meta"),
        }, str(path))

    @classmethod
    def load(cls, path: str | Path) -> ConformerDataset:
        """Read a dataset file with weights_only=True. UnsafeDatasetError (one line) for a file whose
        pickle names a class or function, DatasetFileError for one that is unreadable or not a
        dataset: nothing but plain data is ever unpickled."""
        try:
            d = load_plain(str(path), "dataset")
        except UnsafeFileError as exc:
            raise UnsafeDatasetError(str(exc)) from None
        except Exception as exc:  # missing, truncated, not a torch file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DatasetFileError(f"cannot read dataset {path}: {first}") from None
        if not isinstance(d, dict):
            raise DatasetFileError(f"{path} holds a {type(d).__name__}, not a confgf_fast dataset")
        version = d.get("format_version")
        if version == 1:  # full extended graphs stored
            graphs = PackedGraphs.from_state_dict(d["graphs"])
        elif version == 2:
            ap, bp = d["atom_ptr"], d["bond_ptr"]
            z, bi, bt = d["z"].long(), d["bond_index"].long(), d["bond_type"].long()
            graphs = PackedGraphs([extended_graph(z[ap[m]:ap[m + 1]], bi[:, bp[m]:bp[m + 1]], bt[bp[m]:bp[m + 1]])
                                   for m in range(ap.numel() - 1)])
        else:
            raise DatasetFileError(f"{path}: dataset format {version!r}, expected 1 or {FORMAT_VERSION}")
        return cls(graphs, d["pos"].float(), d["conf_mol"].long(), d["conf_ptr"].long(), d["smiles"],
                   d.get("meta", {}))

