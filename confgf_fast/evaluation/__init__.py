"""Layer 7 (tasks), evaluation: measuring generated conformer ensembles against references.

May import the layers below it: base (config, seeds, threads), graph, ops, chem, model, sampling,
pipeline (today it needs only chem); never the front ends (cli, distributed, the package root).

Modules:
    evaluate      COV and MAT (recall and precision) on heavy-atom RMSD, the stereo check;
                  `python -m confgf_fast.evaluation.evaluate GEN.sdf REF.sdf`
    properties    ensemble property prediction: GFN2-xTB energies and HOMO-LUMO gaps
    distance_mmd  distance-distribution MMD between two ensembles (ConfGF's ISO17 task)

Import the module that holds a name (`from confgf_fast.evaluation.evaluate import evaluate_files`):
this file re-exports nothing.
"""
