"""ZBL repulsion (``model.zbl=true``): the added energy is the ZBL formula switched off at
r_out, forces are its gradient, it survives TorchScript export for every model family, and it makes
a close contact repel."""

import numpy as np
import pytest
import torch
from ase import Atoms

from mlip.errors import ConfigError
from mlip.models import build_model
from mlip.physics import ForcesAndStress
from mlip.testing.systems import SMALL_MODEL_CONFIGS, predict


def _model(name, zbl, species=(29,)):
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    try:
        m = build_model(name, species=list(species), cutoff=4.0, e0=[-1.0] * len(species), scale=0.5, shift=0.0,
                        avg_num_neighbors=10.0, zbl=zbl, **SMALL_MODEL_CONFIGS[name])
    finally:
        torch.set_default_dtype(torch.float32)
    return ForcesAndStress(m.double()).eval()


def _hand_zbl(z1, z2, r, r_out, p=6):
    a = 0.46850 / (z1 ** 0.23 + z2 ** 0.23)
    x = r / a
    phi = sum(c * np.exp(-d * x) for c, d in zip((0.18175, 0.50986, 0.28022, 0.02817),
                                                  (3.19980, 0.94229, 0.40290, 0.20162)))
    u = r / r_out
    env = 1 - (p + 1) * (p + 2) / 2 * u ** p + p * (p + 2) * u ** (p + 1) - p * (p + 1) / 2 * u ** (p + 2)
    return 14.399645 * z1 * z2 / r * phi * env * (u < 1)


@pytest.mark.parametrize("r", [0.6, 1.0, 1.4, 2.0])
def test_added_energy_is_the_zbl_formula(r):
    from ase.data import covalent_radii

    dimer = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, r]])
    with_zbl = float(predict(_model("invariant", True), [dimer])["total_energy"][0])
    without = float(predict(_model("invariant", False), [dimer])["total_energy"][0])
    r_out = 0.6 * 2 * covalent_radii[29]
    assert with_zbl - without == pytest.approx(_hand_zbl(29, 29, r, r_out), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(SMALL_MODEL_CONFIGS))
def test_forces_export_and_repulsion_for_every_model(name, tmp_path):
    from mlip.export import export_torchscript, load_exported

    model = _model(name, True, species=(6, 29))
    atoms = Atoms("CuCuC", positions=[[0, 0, 0], [0, 0, 1.1], [1.0, 0.5, 0.3]])
    out = predict(model, [atoms])
    d = 1e-5
    for k in range(3):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[1, k] += d
        minus.positions[1, k] -= d
        e_plus = float(predict(model, [plus])["total_energy"][0].detach())
        e_minus = float(predict(model, [minus])["total_energy"][0].detach())
        fd = -(e_plus - e_minus) / (2 * d)
        assert float(out["pred_forces"][1, k]) == pytest.approx(fd, rel=1e-5, abs=1e-6)
    export_torchscript(model, str(tmp_path / "m.pt"))
    exported, _ = load_exported(str(tmp_path / "m.pt"))
    res = exported(torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.zeros(3, 3),
                   torch.zeros(3, dtype=torch.bool))
    assert float(res["energy"]) == pytest.approx(float(out["total_energy"][0]), abs=1e-9)
    close = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0.5]])
    assert float(predict(model, [close])["pred_forces"][1, 2]) > 50  # eV/Å, pushing the atoms apart


def test_zbl_setting_is_checked():
    from mlip.models.registry import check_model_settings

    with pytest.raises(ConfigError, match="model.zbl"):
        check_model_settings("invariant", {"zbl": "yes"})
