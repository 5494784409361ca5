"""Graphs of higher order (ModelConfig.graph_order): pairs within K bonds, one edge type per hop
count, trained by fine-tuning a model of order 3 and sampled with the graphs its model expects."""

import numpy as np
import pytest
import torch
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import featurize, mol_from_smiles
from confgf_fast.config import (
    EDGE_ANGLE,
    EDGE_DIHEDRAL,
    NUM_EDGE_TYPES,
    ModelConfig,
    NoiseConfig,
    TrainConfig,
    edge_types_for_order,
    hop_edge_type,
)
from confgf_fast.data.dataset import ConformerDataset
from confgf_fast.model.network import ScoreNet
from confgf_fast.sampling.batch import model_graphs
from confgf_fast.train import Trainer, grown_edge_embedding, train_from_files


def hop_counts(n: int, bonds: list[tuple[int, int]]) -> np.ndarray:
    """[n, n] topological distances by Floyd-Warshall (the oracle for extended_graph)."""
    d = np.full((n, n), np.inf)
    np.fill_diagonal(d, 0)
    for a, b in bonds:
        d[a, b] = d[b, a] = 1
    for k in range(n):
        d = np.minimum(d, d[:, k:k + 1] + d[k:k + 1, :])
    return d


@pytest.mark.parametrize("smiles", ["CCCCCCCO", "c1ccccc1CCN", "CC(C)(C)c1ccc(O)cc1"])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 6])
def test_edges_are_the_pairs_within_order_bonds_typed_by_hop(smiles, order):
    mol = mol_from_smiles(smiles)
    g = featurize(mol).at_order(order)
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    hops = hop_counts(mol.GetNumAtoms(), bonds)
    want = {(int(i), int(j)) for i, j in zip(*np.nonzero((hops >= 1) & (hops <= order)))}
    src, dst = g.edge_index.tolist()
    assert set(zip(src, dst)) == want and len(src) == len(want)
    assert src == sorted(src)
    for k, (i, j) in enumerate(zip(src, dst)):
        h = int(hops[i, j])
        assert (g.edge_type[k] < EDGE_ANGLE) if h == 1 else (g.edge_type[k] == hop_edge_type(h))
        assert src[g.rev[k]] == j and dst[g.rev[k]] == i
    assert int(g.edge_type.max()) < edge_types_for_order(order)


def test_order_three_is_confgf_graph_unchanged():
    g = featurize(mol_from_smiles("CC(=O)Nc1ccc(O)cc1"))
    again = g.at_order(3)
    for name in ("z", "edge_index", "edge_type", "rev"):
        assert torch.equal(getattr(g, name), getattr(again, name))
    assert hop_edge_type(2) == EDGE_ANGLE and hop_edge_type(3) == EDGE_DIHEDRAL
    assert edge_types_for_order(3) == NUM_EDGE_TYPES


def test_model_config_needs_an_edge_type_per_hop():
    with pytest.raises(ValueError, match="order 5 has 8 edge types"):
        ModelConfig(32, 2, graph_order=5)
    assert ScoreNet(ModelConfig(32, 2, num_edge_types=8, graph_order=5)).edge_emb.num_embeddings == 8
    with pytest.raises(ValueError, match="at least 2 bonds"):
        hop_edge_type(1)


def test_grown_embedding_keeps_rows_and_copies_the_torsion_row():
    state = ScoreNet(ModelConfig(16, 1)).state_dict()
    grown = grown_edge_embedding(state, 8)
    w, g = state["edge_emb.weight"], grown["edge_emb.weight"]
    assert g.shape == (8, 16) and torch.equal(g[:6], w)
    assert torch.equal(g[6], w[EDGE_DIHEDRAL]) and torch.equal(g[7], w[EDGE_DIHEDRAL])
    assert grown_edge_embedding(state, 6) is state


def embedded(smiles, n=3, seed=0):
    mol = mol_from_smiles(smiles)
    AllChem.EmbedMultipleConfs(mol, n, randomSeed=seed)
    return mol


def test_fine_tune_to_order_five_then_sample_with_order_five_graphs(tmp_path):
    """train --init ... --graph-order 5: an order-3 model grows two edge types, trains on order-5
    graphs, and generate samples it with order-5 graphs (the model would index past its embedding
    with none, and score no 1-5 pair with order-3 ones)."""
    from confgf_fast import generate
    from confgf_fast.model.checkpoint import WeightsError, load_model, read_checkpoint

    data = ConformerDataset.from_mols([embedded(s, 3, k) for k, s in enumerate(["CCCCCO", "c1ccccc1CC", "CCOCCN"])])
    path = tmp_path / "d.pt"
    data.save(path)
    cfg = TrainConfig(batch_size=8, lr=3e-3, val_every=10, save_every=10, log_every=5, val_batches=1, max_steps=10)
    src = tmp_path / "src.pt"
    Trainer(data, None, ModelConfig(32, 2), NoiseConfig(), cfg).train(10, src, progress=False)
    out = tmp_path / "k5.pt"
    cfg.max_steps = 4
    tr = train_from_files([str(path)], str(out), None, None, cfg, init=str(src), val_fraction=0, progress=False,
                          graph_order=5)
    assert tr.model.config.graph_order == 5 and tr.model.config.num_edge_types == 8
    assert int(tr.train_set.graphs.edge_type.max()) == hop_edge_type(5)  # trained on 1-5 pairs
    old = read_checkpoint(src)["model_state"]["edge_emb.weight"]
    assert read_checkpoint(out)["model_config"]["graph_order"] == 5
    loaded = load_model(out)
    assert loaded.model.config.graph_order == 5
    # The sampler's graphs are built at the model's order.
    g3 = featurize(mol_from_smiles("CCCCCCO"))
    packed = model_graphs([g3], loaded.model)
    assert packed.edge_index.shape[1] > g3.num_edges and int(packed.edge_type.max()) == hop_edge_type(5)
    assert model_graphs([g3], load_model(src).model).edge_index.shape[1] == g3.num_edges
    res = generate(["CCCCCCO"], 3, model=loaded, schedule="quick", relax="none", seed=0)
    assert not res.errors and res.mols[0].GetNumConformers() == 3
    assert np.isfinite(res.mols[0].GetConformer(0).GetPositions()).all()
    # The grown rows started from the torsion row (the first steps moved them, not the shape).
    assert old.shape[0] == 6
    # A resumed run keeps its order.
    with pytest.raises(WeightsError, match="keeps it"):
        train_from_files([str(path)], str(tmp_path / "r.pt"), None, None, cfg, resume=str(src), val_fraction=0,
                         progress=False, graph_order=5)


def test_far_pairs_scored_but_not_messaged_keep_the_near_scores():
    """message_order 3 < graph_order 6: grown from an order-3 model, the scores of the order-3
    pairs are those of the order-3 model (the node states see the same messages), the far pairs get
    scores of their own; directed and paired evaluation agree."""
    torch.manual_seed(0)
    base = ScoreNet(ModelConfig(32, 2)).eval()
    far = ScoreNet(ModelConfig(32, 2, num_edge_types=edge_types_for_order(6), graph_order=6)).eval()
    far.load_state_dict(grown_edge_embedding(base.state_dict(), far.config.num_edge_types))
    mol = embedded("CC(C)Cc1ccc(cc1)C(C)C(=O)O", 1)
    pos = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float32)
    g3 = featurize(mol)
    b3 = model_graphs([g3], base).batch([0])
    b6 = model_graphs([g3], far).batch([0])
    assert b6.num_edges > 2 * b3.num_edges

    def scores(model, b, paired=True):
        src, dst = b.edge_index
        d = (pos[src] - pos[dst]).norm(dim=-1)
        extra = (b.half_edges, b.edge_pair) if paired else ()
        with torch.no_grad():
            return model(b.z, b.edge_index, b.edge_type, d, torch.tensor(0.5), *extra)

    s3, s6 = scores(base, b3), scores(far, b6)
    key6 = {(int(a), int(c)): k for k, (a, c) in enumerate(b6.edge_index.T.tolist())}
    idx = torch.tensor([key6[(int(a), int(c))] for a, c in b3.edge_index.T.tolist()])
    torch.testing.assert_close(s6[idx], s3, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores(far, b6, paired=False), s6, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="message_order"):
        ModelConfig(32, 2, num_edge_types=8, graph_order=5, message_order=6)


def test_order_six_model_compiled_matches_eager():
    from confgf_fast.config import Runtime
    from confgf_fast.sampling.sampler import score_function

    torch.manual_seed(1)
    model = ScoreNet(ModelConfig(32, 2, num_edge_types=edge_types_for_order(6), graph_order=6)).eval()
    b = model_graphs([featurize(mol_from_smiles(s)) for s in ("CCCCCCCCO", "c1ccccc1OCCN")], model).batch([0, 0, 1])
    d = torch.rand(b.num_edges)
    d = (d + d[b.rev]) / 2 + 1.0
    eager = score_function(model, Runtime(compile="off"), torch.device("cpu"), 1)
    compiled = score_function(model, Runtime(compile="on"), torch.device("cpu"), 10**6)
    args = (b.z, b.edge_index, b.edge_type, d, torch.tensor(0.3), b.half_edges, b.edge_pair)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*args), eager(*args), rtol=1e-4, atol=1e-4)
