"""Layer 6, pipeline: a generate run from inputs to written conformers.

May import the layers below it only: base (config, seeds, threads), graph, ops, chem, model,
sampling.

Modules:
    request   GenerateRequest: what one run is asked to do, built by the CLI and the Python API and
              validated once
    generate  generate / generate_iter: SMILES / Mols in, conformers on Mols out (retries, relaxation,
              flags)
    io        the files of `confgf-fast generate`: reading inputs, the streamed SDF, --resume, the
              errors file, exit codes

Import the module that holds a name (`from confgf_fast.pipeline.generate import generate_iter`):
this file re-exports nothing.
"""
