"""Layer 4, model: the score network and everything a checkpoint carries.

May import the layers below it only: base (config, seeds, threads), graph, ops, chem.

Modules:
    network     ScoreNet (the GINE score network over the extended graph), MLP, GINELayer
    loaded      LoadedModel (model, noise levels, metadata) and ModelMeta
    elements    the element and heavy-atom policy: which molecules a model may be asked about
    checkpoint  reading (weights-only) and writing checkpoints, the shipped weights
    official    importing checkpoints of the official ConfGF implementation

Import the module that holds a name (`from confgf_fast.model.network import ScoreNet`): this file
re-exports nothing.
"""
