"""Layer 5, sampling: turning a batch of graphs and a model into coordinates.

May import the layers below it only: base (config, seeds, threads), graph, ops, chem, model.

Modules:
    sampler    annealed Langevin dynamics and projected denoising over a flat batch, batch planning
    planarity  planar groups of a batch and the projection that flattens them
    batch      sampling one batch on the device (RDKit-free), shared by pipeline and tensors
    prepare    the RDKit preparation of one input molecule for sampling (MolInput, MolOutcome)
    tensors    generate_tensors: conformers as tensors that stay on the device

Import the module that holds a name (`from confgf_fast.sampling.sampler import langevin_sample`):
this file re-exports nothing.
"""
