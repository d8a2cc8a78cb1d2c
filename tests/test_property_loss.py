"""Elastic constants as training targets: the autograd stress-strain coefficients equal the finite
differences ``mlip validate`` measures, malformed entries are refused by name, and an EAM fitted
with the C_ij term reproduces the reference C_ij better than without it."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlip.data.graph import atoms_to_graph
from mlip.errors import ConfigError
from mlip.nn.batch import collate
from mlip.testing.systems import make_model
from mlip.training.property_loss import check_properties, elastic_constants


@pytest.mark.parametrize("name", ["eam", "invariant"])
def test_autograd_elastic_constants_equal_finite_differences(name):
    from test_validation import _calculator

    from mlip.export.torchscript import ExportedPotential
    from mlip.validation.properties import elastic_constants as finite_differences

    model = make_model(name, [29], cutoff=5.0)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    c = elastic_constants(model.energy_model, collate([atoms_to_graph(cu, 5.0, {29: 0})], torch.float64), False)
    fd = finite_differences(cu, _calculator(ExportedPotential(model, [29], 5.0)), relax_ions=False)
    scale = np.abs(np.array(fd["C"])).max()
    np.testing.assert_allclose(c.detach().numpy(), np.array(fd["C"]), atol=0.01 * scale)


def test_malformed_property_entries_are_refused():
    with pytest.raises(ConfigError, match=r"loss.properties\[0\].elastic.C77"):
        check_properties([{"structure": "Cu:fcc:3.6", "elastic": {"C77": 1.0}, "sigma": 1.0}])
    with pytest.raises(ConfigError, match=r"loss.properties\[0\].sigma"):
        check_properties([{"structure": "Cu:fcc:3.6", "elastic": {"C11": 1.0}, "sigma": -1}])


@pytest.mark.slow
def test_fitting_with_the_elastic_term_moves_cij_to_the_reference(tmp_path):
    from ase.calculators.emt import EMT
    from ase.io import write
    from hydra import compose, initialize_config_dir

    from mlip.cli.config_path import CONFIG_DIR
    from mlip.cli.train import run
    from mlip.validation import properties as P

    rng = np.random.default_rng(0)
    frames = []
    for k in range(24):
        a = bulk("Cu", "fcc", a=3.59, cubic=True).repeat((2, 1, 1))
        a.set_cell(a.cell * rng.uniform(0.97, 1.03), scale_atoms=True)
        a.rattle(0.08, seed=k)
        a.calc = EMT()
        a.get_potential_energy()
        frames.append(a)
    write(tmp_path / "cu.extxyz", frames)
    ref = P.elastic_constants(P.relax(bulk("Cu", "fcc", a=3.59, cubic=True), EMT()), EMT(), relax_ions=False)
    target = {"C11": ref["C11"], "C12": ref["C12"], "C44": ref["C44"]}
    errors = {}
    for name, extra in (("plain", []), ("with_cij", [
            'loss.properties=[{structure: "Cu:fcc:3.59", elastic: {C11: %.2f, C12: %.2f, C44: %.2f}, sigma: 2.0}]'
            % (target["C11"], target["C12"], target["C44"])])):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=["data=custom", f"data.train={tmp_path / 'cu.extxyz'}", "model=eam",
                                              "trainer.max_epochs=15", "export=false",
                                              "trainer.enable_progress_bar=false", *extra])
        result = run(cfg, tmp_path / name)
        from mlip.training.checkpoint_load import model_from_checkpoint

        model = model_from_checkpoint(str(tmp_path / name / "checkpoints" / "best.ckpt"))
        cell = collate([atoms_to_graph(bulk("Cu", "fcc", a=3.59, cubic=True), 5.0, {29: 0})],
                       next(model.parameters()).dtype)
        c = elastic_constants(model.energy_model, cell, False)
        errors[name] = (np.mean([abs(float(c[i, j]) - target[k]) for k, (i, j) in
                                 (("C11", (0, 0)), ("C12", (0, 1)), ("C44", (3, 3)))]), result["test"]["forces_mae"])
    assert errors["with_cij"][0] < 0.5 * errors["plain"][0]
