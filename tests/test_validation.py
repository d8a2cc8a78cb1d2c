"""Validation properties: pair potentials obey the Cauchy relation (C12 = C44 at zero pressure) and
many-body ones break it, the bulk modulus from E(V) equals (C11 + 2 C12)/3, acoustic phonons vanish
at Γ, EMT's Cu vacancy energy is in its known range, and ``mlip validate`` writes its report."""

import json

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlip.validation import properties as P


@pytest.mark.parametrize("name", ["lj", "spline_pair"])
def test_pair_potentials_obey_the_cauchy_relation(name):
    from mlip.export.torchscript import ExportedPotential
    from mlip.testing.systems import make_model

    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    model = make_model(name, [29], cutoff=5.0)

    calc = _calculator(ExportedPotential(model, [29], 5.0))
    relaxed = P.relax(cu, calc)
    c = P.elastic_constants(relaxed, calc, relax_ions=False)
    assert c["C44"] > 1.0
    assert abs(c["cauchy_pressure"]) < 0.01 * c["C44"]


def _calculator(potential):
    """An ASE calculator around an ``ExportedPotential`` in memory."""
    import numpy as np
    import torch
    from ase.calculators.calculator import Calculator, all_changes
    from ase.stress import full_3x3_to_voigt_6_stress

    from mlip.nn.neighbors import vesin_neighbor_list

    class Calc(Calculator):
        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            a = self.atoms
            ei, sh, _ = vesin_neighbor_list(a.positions, a.cell[:], a.pbc, potential.cutoff)
            out = potential.compute(torch.tensor(a.positions), torch.tensor(a.numbers), torch.tensor(a.cell[:]),
                                    torch.tensor(a.pbc), torch.from_numpy(ei), torch.from_numpy(sh).double())
            self.results = {"energy": float(out["energy"]), "forces": out["forces"].detach().numpy(),
                            "stress": full_3x3_to_voigt_6_stress(out["stress"].detach().numpy().astype(np.float64))}

    return Calc()


def test_emt_copper_properties_are_consistent():
    cu = P.relax(bulk("Cu", "fcc", a=3.61, cubic=True), EMT())
    eos = P.equation_of_state(cu, EMT())
    c = P.elastic_constants(cu, EMT())
    assert eos["bulk_modulus"] == pytest.approx(c["bulk_modulus_from_C"], rel=0.02)
    assert c["cauchy_pressure"] > 10  # many-body: the Cauchy relation is broken
    assert 0.9 < P.vacancy_formation_energy(cu, EMT())["vacancy_formation_energy"] < 1.5
    ph = P.phonons(cu, EMT(), supercell=(2, 2, 2))
    assert max(abs(f) for f in ph["special_points"]["G"][:3]) < 0.05  # acoustic modes at Γ
    assert ph["min_frequency"] > -0.05  # no imaginary modes in the stable lattice


def test_validate_command_writes_the_report(tmp_path):
    from mlip.cli.main import main
    from mlip.export import export_torchscript
    from mlip.testing.systems import make_model

    export_torchscript(make_model("eam", [29], cutoff=5.0), str(tmp_path / "model.pt"))
    assert main(["validate", str(tmp_path / "model.pt"), "--structure", "Cu:fcc:3.61", "--reference", "emt",
                 "--properties", "eos,elastic,vacancy", "--output", str(tmp_path / "val")]) == 0
    result = json.loads((tmp_path / "val" / "validation.json").read_text())
    names = [row["property"] for row in result["table"]]
    assert "C44" in names and "vacancy formation energy" in names
    assert result["reference"]["elastic"]["cauchy_pressure"] > 10
    assert (tmp_path / "val" / "validation.md").read_text().count("|") > 20
    assert (tmp_path / "val" / "eos.png").is_file()


def test_nve_drift_separates_conservative_from_noisy_forces():
    """EMT's forces are the gradient of its energy: NVE conserves the total energy (small drift and
    spread). Forces with noise added (not the gradient of anything) heat the system: a drift and a
    spread orders of magnitude larger."""
    import numpy as np
    from ase.calculators.calculator import Calculator, all_changes

    class NoisyEMT(Calculator):
        implemented_properties = ["energy", "forces"]

        def __init__(self):
            super().__init__()
            self.emt = EMT()
            self.rng = np.random.default_rng(0)

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            a = atoms.copy()
            a.calc = self.emt
            self.results = {"energy": a.get_potential_energy(),
                            "forces": a.get_forces() + self.rng.normal(0, 0.3, (len(a), 3))}

    cu = bulk("Cu", "fcc", 3.59, cubic=True).repeat(2)
    exact = P.md_properties(cu, EMT(), 600.0, steps=60, equilibration=20, nve_steps=200, timestep_fs=2.0)
    noisy = P.md_properties(cu, NoisyEMT(), 600.0, steps=60, equilibration=20, nve_steps=200, timestep_fs=2.0)
    assert abs(exact["nve_drift_meV_per_atom_ps"]) < 2.0 and exact["nve_energy_std_meV_per_atom"] < 1.0
    assert abs(noisy["nve_drift_meV_per_atom_ps"]) > 10 * max(abs(exact["nve_drift_meV_per_atom_ps"]), 0.5)
    assert noisy["nve_energy_std_meV_per_atom"] > 5 * exact["nve_energy_std_meV_per_atom"]


def test_dimer_curves_find_the_closest_approach_and_holes():
    """EMT's Cu dimer: bound near 2.2 Å and repulsive all the way in; a 100 eV head-on collision
    turns back near 0.9 Å. A calculator whose energy turns over below 1 Å (a hole, what an ML model
    with no close-contact data can do) is reported as one, and 100 eV atoms pass through it."""
    import numpy as np
    from ase.calculators.calculator import Calculator, all_changes

    cu = bulk("Cu", "fcc", 3.59, cubic=True)
    emt = P.dimer_curves(cu, EMT())["pairs"]["Cu-Cu"]
    assert 2.0 < emt["minimum_r"] < 2.4 and emt["hole_below"] is None
    assert 0.7 < emt["closest_approach"]["100"] < 1.1 and emt["closest_approach"]["10"] > emt["closest_approach"]["100"]

    class Holed(Calculator):
        """EMT's pair energy beyond 1 Å; below it a Gaussian well: the dimer collapses."""
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            a = atoms.copy()
            a.calc = EMT()
            d = atoms.get_distance(0, 1)
            energy = a.get_potential_energy() if d > 1.0 else -20.0 * np.exp(-((d - 0.4) / 0.3) ** 2)
            self.results = {"energy": energy, "forces": np.zeros((len(atoms), 3))}

    holed = P.dimer_curves(cu, Holed())["pairs"]["Cu-Cu"]
    assert holed["hole_below"] is not None and 0.9 < holed["hole_below"] <= 1.05
    assert holed["closest_approach"]["100"] is None and 2.0 < holed["minimum_r"] < 2.4
