"""Several sets of weights in one run: each molecule goes to the weights trained on its elements and
size (elements.choose_model), through the Python API and the CLI."""

from __future__ import annotations

import pytest
import torch
from rdkit import Chem

from confgf_fast.cli import main
from confgf_fast.model.checkpoint import (
    DEFAULT_WEIGHTS_SET,
    default_weights_paths,
    export_weights,
    load_model,
    load_models,
)
from confgf_fast.model.elements import Coverage, choose_model
from confgf_fast.pipeline.generate import generate

H, C, N, OX, F, P, S, CL = 1, 6, 7, 8, 9, 15, 16, 17
QM9 = Coverage(frozenset({H, C, N, OX, F}), 9)
DRUGS = Coverage(frozenset({H, C, N, OX, F, S, CL}), 26)


def test_choose_model_prefers_the_first_that_covers_elements_and_size():
    assert choose_model({H, C, OX}, 3, [QM9, DRUGS]) == 0
    assert choose_model({H, C, OX}, 9, [QM9, DRUGS]) == 0
    assert choose_model({H, C, OX}, 10, [QM9, DRUGS]) == 1  # too large for QM9's weights
    assert choose_model({H, C, S}, 3, [QM9, DRUGS]) == 1  # sulfur: only the drug-like weights know it
    # Larger than both: the one that knows the elements and was trained on the largest molecules.
    assert choose_model({H, C}, 40, [QM9, DRUGS]) == 1
    assert choose_model({H, C}, 40, [DRUGS, QM9]) == 0
    # Nobody knows phosphorus: the last, whose element check then refuses it (or warns).
    assert choose_model({H, C, P}, 5, [QM9, DRUGS]) == 1
    # Order is the user's: a model of unknown size (None) covers every size.
    assert choose_model({H, C}, 50, [Coverage(frozenset({H, C}), None), DRUGS]) == 0
    # One set of weights: always it, whatever the molecule (the one-model behaviour is unchanged).
    for zs, n in (({H, C}, 3), ({H, P}, 2), ({H, C}, 99)):
        assert choose_model(zs, n, [QM9]) == 0


def _variant(src, dst, elements, max_heavy):
    state = torch.load(src, map_location="cpu", weights_only=True)
    state["trained_elements"] = list(elements)
    state["trained_max_heavy_atoms"] = max_heavy
    torch.save(state, dst)
    return dst


def _pair(tiny_ckpt, tmp_path):
    a = _variant(tiny_ckpt, tmp_path / "small.pt", (H, C, N, OX), 4)
    b = _variant(tiny_ckpt, tmp_path / "large.pt", (H, C, N, OX, S), 30)
    return a, b


SMILES = ["CCO", "CCCCCCCCCC", "CCS", "CC(N)O", "CCP"]  # small, large, sulfur, small, unknown element


def test_generate_routes_each_molecule_and_keeps_input_order(tiny_ckpt, tmp_path):
    a, b = _pair(tiny_ckpt, tmp_path)
    models = load_models([a, b])
    res = generate(SMILES, 2, model=models, schedule="quick", seed=3)
    for k, smi in enumerate(SMILES[:4]):
        mol = res.mols[k]
        assert mol is not None and mol.GetNumConformers() == 2, (k, res.errors.get(k))
        assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == Chem.CanonSmiles(smi)
    assert res.mols[4] is None and "P" in res.errors[4] and "S" in res.errors[4]  # the last model's vocabulary
    assert dict(res.stats.per_model) == {0: 2, 1: 2}
    # Reproducible, and a molecule's conformers do not depend on the other model's share of the chunk.
    again = generate(SMILES, 2, model=list(models), schedule="quick", seed=3)
    for m1, m2 in zip(res.mols[:4], again.mols[:4]):
        assert all(torch.equal(torch.tensor(c1.GetPositions()), torch.tensor(c2.GetPositions()))
                   for c1, c2 in zip(m1.GetConformers(), m2.GetConformers()))


def test_a_run_within_the_first_model_equals_that_model_alone(tiny_ckpt, tmp_path):
    a, b = _pair(tiny_ckpt, tmp_path)
    small = ["CCO", "CC(N)O", "OCCO"]
    both = generate(small, 3, weights=[str(a), str(b)], seed=5)
    alone = generate(small, 3, weights=str(a), seed=5)
    assert dict(both.stats.per_model) == {0: 3}
    for m1, m2 in zip(both.mols, alone.mols):
        for c1, c2 in zip(m1.GetConformers(), m2.GetConformers()):
            assert torch.equal(torch.tensor(c1.GetPositions()), torch.tensor(c2.GetPositions()))


def test_cli_records_which_weights_sampled_each_molecule(tiny_ckpt, tmp_path, capsys):
    a, b = _pair(tiny_ckpt, tmp_path)
    inp = tmp_path / "in.smi"
    inp.write_text("\n".join(SMILES[:4]) + "\n")
    out = tmp_path / "out.sdf"
    rc = main(["generate", str(inp), "-n", "2", "-o", str(out), "--weights", str(a), "--weights", str(b),
               "--schedule", "quick", "-q"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "molecules per weights: small.pt 2, large.pt 2" in err
    used = {}
    for mol in Chem.SDMolSupplier(str(out), removeHs=False):
        used.setdefault(mol.GetIntProp("mol_id"), set()).add(mol.GetProp("sampler").split("weights=")[1].split()[0])
    assert used == {0: {"small.pt"}, 1: {"large.pt"}, 2: {"large.pt"}, 3: {"small.pt"}}


def test_the_shipped_set_covers_qm9_and_drug_like_molecules():
    paths = default_weights_paths()
    assert [p.name for p in paths] == list(DEFAULT_WEIGHTS_SET) and all(p.is_file() for p in paths)
    qm9, drugs = (Coverage.of(m) for m in load_models())
    assert qm9 == Coverage.of(load_model())  # load_model() alone is still the QM9 model
    # Sulfonamide, aryl chloride and bromide, 20-odd heavy atoms: the drug-like weights.
    for smi in ("Cc1ccc(S(=O)(=O)Nc2ccc(Cl)cc2)cc1", "Brc1ccc(C(=O)NCCN2CCOCC2)cc1"):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        zs = {a.GetAtomicNum() for a in mol.GetAtoms()}
        assert choose_model(zs, mol.GetNumHeavyAtoms(), [qm9, drugs]) == 1
        assert drugs.knows(zs)
    # A QM9-size molecule stays with the QM9 weights, so QM9 results are those of the QM9 model.
    assert choose_model({H, C, N, OX}, 9, [qm9, drugs]) == 0


def test_sampler_defaults_of_the_weights_apply_where_the_user_left_the_preset():
    from confgf_fast.config import check_sampler_defaults, resolve_schedule

    warm = resolve_schedule()
    tuned = resolve_schedule(tuned={"sigma_max": 0.15})
    assert tuned.sigma_max == 0.15 and warm.sigma_max == 0.5  # frozen: a new schedule
    assert tuned.num_steps == warm.num_steps
    assert "sigma_max=0.15" in tuned.describe()  # the SDF provenance names it
    mine = resolve_schedule(overrides={"sigma_max": 0.3})
    assert resolve_schedule(mine, tuned={"sigma_max": 0.15}).sigma_max == 0.3  # the user's setting wins
    # ... also a setting equal to the preset's value: explicit settings always win
    same = resolve_schedule(overrides={"sigma_max": 0.5})
    assert resolve_schedule(same, tuned={"sigma_max": 0.15}).sigma_max == 0.5
    assert resolve_schedule(warm, tuned=None) is warm and resolve_schedule(warm, tuned={}) is warm
    for bad in ({"warm": {"init": 1}}, {"nope": {"sigma_max": 1}}, {"warm": {"sigma_max": "x"}},
                {"paper": {"sigma_max": 1.0}}):  # a setting of another family
        try:
            check_sampler_defaults(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


def test_export_weights_stores_sampler_defaults_and_generate_uses_them(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    # --raw: the same weights as tiny_ckpt itself, so only the sampler settings differ below
    assert main(["export-weights", str(tiny_ckpt), str(out), "--raw", "--sampler-default", "warm.sigma_max=0.15"]) == 0
    assert "sampler defaults warm: sigma_max=0.15" in capsys.readouterr().err
    assert load_model(out).meta.sampler_defaults == {"warm": {"sigma_max": 0.15}}
    assert main(["export-weights", str(tiny_ckpt), str(tmp_path / "x.pt"), "--sampler-default", "warm.init=1"]) == 2
    assert main(["export-weights", str(tiny_ckpt), str(tmp_path / "x.pt"), "--sampler-default", "sigma_max"]) == 2
    sdf = tmp_path / "o.sdf"
    assert main(["generate", "CCO", "-n", "2", "-o", str(sdf), "--weights", str(out), "-q"]) == 0
    tags = {m.GetProp("sampler") for m in Chem.SDMolSupplier(str(sdf), removeHs=False)}
    assert len(tags) == 1 and "sigma_max=0.15" in tags.pop()
    # The tuned start noise reaches the sampler: it changes the coordinates, as setting it by hand does.
    tuned = generate(["CCO"], 2, weights=str(out), seed=1)
    plain = generate(["CCO"], 2, weights=str(tiny_ckpt), seed=1)
    from confgf_fast.config import resolve_schedule

    by_hand = resolve_schedule(overrides={"sigma_max": 0.15})
    manual = generate(["CCO"], 2, weights=str(tiny_ckpt), schedule=by_hand, seed=1)
    pos = [torch.tensor(r.mols[0].GetConformer(0).GetPositions()) for r in (tuned, plain, manual)]
    assert torch.equal(pos[0], pos[2]) and not torch.equal(pos[0], pos[1])


def test_relax_auto_relaxes_each_molecule_as_its_weights_were_exported(tiny_ckpt, tmp_path, capsys):
    """export-weights --relax-default stores the relax method measured best for what the weights
    sample; relax "auto" (generate's default) applies it per molecule: here the small-molecule
    weights do not relax and the sulfur-knowing ones relax with MMFF94, in one run."""
    a, b = _pair(tiny_ckpt, tmp_path)
    b_mmff = tmp_path / "large_mmff.pt"
    assert main(["export-weights", str(b), str(b_mmff), "--raw", "--relax-default", "mmff"]) == 0
    assert "relax default mmff" in capsys.readouterr().err
    assert load_model(b_mmff).meta.relax_default == "mmff" and load_model(a).meta.relax_default == "none"
    res = generate(["CCO", "CCS"], 2, weights=[str(a), str(b_mmff)], seed=2)
    assert [f.get("energy_method") for f in res.flags[0]] == [None, None]  # the small weights: unrelaxed
    assert [f["energy_method"] for f in res.flags[1]] == ["MMFF94", "MMFF94"]
    assert res.stats.relaxed == 2
    # an explicit method applies to every molecule, whatever the weights say
    none = generate(["CCO", "CCS"], 2, weights=[str(a), str(b_mmff)], seed=2, relax="none")
    assert all("energy_method" not in f for fl in none.flags.values() for f in fl)
    assert torch.equal(torch.tensor(none.mols[0].GetConformer(0).GetPositions()),
                       torch.tensor(res.mols[0].GetConformer(0).GetPositions()))
    # the CLI's default is auto too; energy options need every molecule relaxed
    sdf = tmp_path / "o.sdf"
    assert main(["generate", "CCS", "-n", "2", "-o", str(sdf), "--weights", str(b_mmff), "-q"]) == 0
    assert {m.GetProp("energy_method") for m in Chem.SDMolSupplier(str(sdf), removeHs=False)} == {"MMFF94"}
    assert "relaxing (mmff)" in capsys.readouterr().err
    assert main(["generate", "CCS", "-n", "2", "-o", str(sdf), "--weights", str(a), "--weights", str(b_mmff),
                 "--prune-rms", "0.5", "-q"]) == 2
    assert "--relax auto leaves the molecules of small.pt unrelaxed" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's choices
        main(["export-weights", str(b), str(tmp_path / "x.pt"), "--relax-default", "fire"])
    with pytest.raises(ValueError, match="relax_default"):
        export_weights(b, tmp_path / "x.pt", relax_default="fire")


def test_shipped_drug_weights_sample_drug_size_molecules_from_noise_without_clashes():
    """From noise (`--init random`, schedule noise) the shipped drug-like weights bring their own
    measured settings (sigma_max 4, repel 1.0: docs/samplers.md, *From noise*), and the repel is
    what keeps drug-size samples intact: without it 14 of 16 samples of this 27-heavy-atom GEOM-Drugs
    molecule failed the vdw / connectivity tests (session probe), with it none of them."""
    import confgf_fast as cf
    from confgf_fast.config import resolve_schedule

    models = load_models()
    assert models[1].meta.sampler_defaults["noise"] == {"sigma_max": 4.0, "repel": 1.0}
    smi = "COc1ccc(CC(=O)N2CCN(c3ncccn3)CC2)cc1OC(F)F"  # 28 heavy atoms: the drug-like weights
    cfg = resolve_schedule("noise", overrides={"oversample": 1})
    res = cf.generate([smi], 6, schedule=cfg, relax="none", seed=0)
    assert [f["quality"] for f in res.flags[0]] == ["ok"] * 6
    # a bound of 1 % of the vdW sum (0.03 A) never acts (an explicit 0 would do as well now:
    # explicit settings win over the weights' 1.0, resolve_schedule)
    off = resolve_schedule("noise", overrides={"oversample": 1, "repel": 0.01})
    res_off = cf.generate([smi], 6, schedule=off, relax="none", seed=0)
    assert sum(f["quality"] != "ok" for f in res_off.flags[0]) >= 3  # the control: the fix is live


def test_load_model_gives_the_network_its_noise_levels_and_its_metadata(tiny_ckpt):
    import dataclasses

    from confgf_fast.config import NoiseConfig
    from confgf_fast.model.loaded import LoadedModel, ModelMeta
    from confgf_fast.model.network import ScoreNet

    loaded = load_model(tiny_ckpt)
    assert isinstance(loaded, LoadedModel) and isinstance(loaded.model, ScoreNet)
    assert isinstance(loaded.noise, NoiseConfig)
    assert loaded.meta.weights_name == tiny_ckpt.name and loaded.meta.relax_default == "none"
    assert not hasattr(loaded.model, "trained_elements")  # metadata sits beside the network, not on it
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.meta.trained_max_heavy_atoms = None
    # a bare network: built in code, nothing known about its training data
    bare = LoadedModel.of(loaded.model)
    assert bare.meta == ModelMeta() and bare.noise == NoiseConfig() and bare.meta.name == "unknown"
    assert LoadedModel.of(loaded) is loaded
    assert Coverage.of(bare).max_heavy_atoms is None
