"""Layer 3, chem: RDKit and xTB in and out, and judging finished conformers.

May import the layers below it only: base (config, seeds, threads), graph, ops. Nothing above
(model, sampling, pipeline, evaluation, ...) may be imported here, not even lazily
(tests/test_package_structure.py checks it).

Modules:
    molecule   SMILES / Mol -> MolGraph (featurize), conformers onto Mols, ETKDG starts, SDF writing,
               stereo checks on 3D geometry
    stereo     the input's stereochemistry as constraints, the guidance force and mirror checks
    quality    broken-conformer tests (bonds, clashes, van der Waals overlaps, connectivity) and
               their SDF flags
    diversity  Kabsch RMSD and farthest-point selection of a diverse subset of conformers
    xtb        the GFN2-xTB engine (tblite): single points, forces, optimisation
    relax      the optional MMFF / UFF / GFN2-xTB relaxation of finished conformers, energy window,
               RMSD pruning

Import the module that holds a name (`from confgf_fast.chem.molecule import featurize`): this file
re-exports nothing.
"""
