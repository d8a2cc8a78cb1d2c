"""Export round trips (TorchScript for every registered model, AOTInductor for one), files that
load where mlip cannot be imported, the ``mlip export`` command and the calculator on each file.

AOTInductor compiles C++ for each package (10-30 s on a quiet CPU core, minutes on a busy
machine): one four-species float64 package through ``mlip export --format aoti`` shared by the
round-trip tests, one float32 package of a trained run, and one small package per model family.
"""

import contextlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from mlip.export import export_torchscript, load_exported
from mlip.export.aoti import OUTPUTS, EnginePotential, example_inputs, export_aoti, load_aoti, trace_with_forces
from mlip.models import MODEL_REGISTRY
from mlip.models.contract import reads_paired_edges
from mlip.nn.geometry import half_edge_list
from mlip.nn.neighbors import vesin_neighbor_list
from mlip.testing.isolation import WITHOUT_MLIP
from mlip.testing.systems import ethanol, make_model, predict, sicgeo_cell, triclinic_si

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")

SPECIES = [1, 6, 8, 14]
SYSTEMS = [triclinic_si, ethanol, sicgeo_cell]


def _mixed_model(name):
    return make_model(name, SPECIES, cutoff=4.0, calibrate_on=[ethanol(), sicgeo_cell()])


def _engine_inputs(atoms, cutoff=4.0, dtype=torch.float64):
    edge_index, shifts, _ = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    return (torch.tensor(atoms.positions, dtype=dtype), torch.tensor(atoms.numbers),
            torch.tensor(atoms.cell[:], dtype=dtype), torch.tensor(atoms.pbc), torch.from_numpy(edge_index),
            torch.from_numpy(shifts).to(dtype))


def _export_cli(*args):
    from mlip.cli.main import main

    return main(["export", *map(str, args)])


@contextlib.contextmanager
def _torch_threads(n):
    """torch's intra-op thread count set to ``n`` inside the block (the suite runs with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _assert_equal_to_eager(out, ref, energy_tol=1e-8, force_tol=1e-8):
    assert abs(float(out["energy"] - ref["total_energy"][0])) < energy_tol
    torch.testing.assert_close(out["forces"], ref["pred_forces"], atol=force_tol, rtol=0)
    torch.testing.assert_close(out["stress"], ref["pred_stress"][0], atol=force_tol, rtol=0)
    torch.testing.assert_close(out["atomic_energies"].sum(), out["energy"], atol=energy_tol, rtol=0)


# ------------------------------------------------------------------ TorchScript, every model family
@pytest.mark.parametrize("name", sorted(MODEL_REGISTRY))
def test_torchscript_round_trip_every_model(name, tmp_path):
    model = _mixed_model(name)
    path = tmp_path / "model.pt"
    export_torchscript(model, str(path))
    scripted, meta = load_exported(str(path))
    assert meta["dtype"] == "float64" and meta["atomic_numbers"] == SPECIES
    for make in SYSTEMS:
        atoms = make()
        ref = predict(model, [atoms])
        inputs = _engine_inputs(atoms)
        _assert_equal_to_eager(scripted(*inputs[:4]), ref)  # its own neighbour list
        _assert_equal_to_eager(scripted.compute(*inputs), ref)  # the engine's
        assert ref["pred_forces"].abs().max() > 1e-3  # a model with real forces, not a constant


# ------------------------------------------------------------------ AOTInductor
def _checkpoint_of(model, name, path):
    """Save a ``make_model`` model as a training checkpoint, as ``python train.py`` would."""
    from mlip.testing.systems import SMALL_MODEL_CONFIGS
    from mlip.training.module import PotentialModule

    energies = model.energy_model.energies
    model_config = dict(name=name, species=SPECIES, cutoff=4.0, e0=energies.e0.tolist(),
                        scale=float(energies.scale), shift=float(energies.shift), avg_num_neighbors=10.0,
                        **SMALL_MODEL_CONFIGS[name])
    hparams = dict(model_config=model_config, loss_config={"sigma": {"energy": 1.0}}, optimizer_config={})
    module = PotentialModule(**hparams).double()
    module.model.load_state_dict(model.state_dict())
    torch.save({"hyper_parameters": hparams, "state_dict": module.state_dict()}, path)


@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory):
    """The one AOTInductor compile of the suite: ``mlip export ckpt --format aoti`` of a
    four-species float64 model."""
    model = _mixed_model("invariant")
    run_dir = tmp_path_factory.mktemp("aoti")
    (run_dir / "checkpoints").mkdir()
    _checkpoint_of(model, "invariant", run_dir / "checkpoints" / "best.ckpt")
    assert _export_cli(run_dir, "--format", "aoti") == 0
    return model, run_dir / "model.pt2"


@pytest.mark.parametrize("name", sorted(MODEL_REGISTRY))
def test_every_model_exports_with_forces_through_torch_export(name):
    """The step before compiling (make_fx unrolling autograd, then torch.export with dynamic atom
    and edge counts) works for every model family and equals eager; compiling is left to the
    invariant model above."""
    model = _mixed_model(name)
    for p in model.parameters():
        p.requires_grad_(False)
    module = EnginePotential(model, SPECIES)
    inputs = example_inputs(SPECIES, 4.0, torch.float64, torch.device("cpu"))
    graph = trace_with_forces(module, inputs)
    n_atoms, n_edges = torch.export.Dim("n_atoms", min=2), torch.export.Dim("n_edges", min=2)
    dynamic = ({0: n_atoms}, {0: n_atoms}, None, None, {1: n_edges}, {0: n_edges})
    program = torch.export.export(graph, inputs, strict=False, dynamic_shapes=dynamic)
    for make in SYSTEMS:
        atoms = make()
        _assert_equal_to_eager(program.module()(*_engine_inputs(atoms)), predict(model, [atoms]))
    if reads_paired_edges(model):  # the graph "paired" on each pair once: a crystal, a molecule, 4 species
        half_inputs = inputs[:4] + half_edge_list(inputs[4], inputs[5])
        paired = torch.export.export(trace_with_forces(EnginePotential(model, SPECIES, paired=True), half_inputs),
                                     half_inputs, strict=False, dynamic_shapes=dynamic)
        for make in SYSTEMS:
            atoms = make()
            full = _engine_inputs(atoms)
            out = paired.module()(*full[:4], *half_edge_list(full[4], full[5]))
            _assert_equal_to_eager(out, predict(model, [atoms]))


@pytest.mark.parametrize("name", sorted(MODEL_REGISTRY))
def test_every_model_compiles_with_aoti(name, tmp_path):
    """A full compile per model family, on a single-species model (10-30 s each on a quiet core);
    the package's own neighbour list, the same for every family, is left to the fixture above."""
    model = make_model(name, [14], cutoff=4.0, calibrate_on=[triclinic_si()])
    with _torch_threads(2):  # as a user's export on a multi-core machine (Inductor's parallel kernels)
        compiled, meta = load_aoti(export_aoti(model, str(tmp_path / "model.pt2"), neighbors=False))
    # the invariant model (no message passing, the exchange hooks) also gets the engines' graph "local",
    # the equivariant one (its radial network once per pair) the graph "paired", which takes a half list
    assert compiled.neighbors is None and list(meta["packaged_models"]) == (
        ["model"] + ["paired"] * (name == "equivariant") + ["local"] * (name == "invariant"))
    assert (compiled.paired is not None) == (name == "equivariant")
    assert meta["atomic_numbers"] == [14]
    assert meta["receptive_field"] == (8.0 if name == "equivariant" else 4.0)  # Å: 2 layers x cutoff
    for atoms in (triclinic_si(), triclinic_si(seed=3).repeat((1, 2, 1))):
        ref = predict(model, [atoms])
        inputs = _engine_inputs(atoms)
        _assert_equal_to_eager(compiled.compute(*inputs), ref)  # the graph "paired" where there is one
        _assert_equal_to_eager(compiled.compiled(*inputs), ref)  # the graph "model" on the full list


@pytest.mark.parametrize("make", SYSTEMS)
def test_aoti_round_trip(aoti_package, make):
    model, path = aoti_package
    compiled, meta = load_aoti(str(path))
    atoms = make()
    ref = predict(model, [atoms])
    out = compiled.compute(*_engine_inputs(atoms))
    _assert_equal_to_eager(out, ref)
    volume = abs(np.linalg.det(atoms.cell[:]))
    torch.testing.assert_close(out["virial"], -out["stress"] * volume, atol=1e-10, rtol=0)
    assert meta["atomic_numbers"] == SPECIES and meta["cutoff"] == 4.0 and meta["dtype"] == "float64"
    assert meta["units"]["forces"] == "eV/Angstrom"


@pytest.mark.parametrize("make", SYSTEMS)
def test_aoti_local_graph_in_blocks_equals_the_whole(aoti_package, make):
    """A structure with more atoms than ``AOTIPotential.block`` runs the graph ``local`` on blocks of
    atoms, each block's other neighbours (atoms of other blocks, periodic images) as ghosts: energy,
    forces, stress and virial equal the eager model's and the per-atom energies the whole graph's
    (float64), for a triclinic cell, a molecule (no cell) and a four-element cell."""
    model, path = aoti_package
    compiled, _ = load_aoti(str(path))
    assert compiled.local is not None  # the invariant model: no message passing
    atoms = make()
    inputs = _engine_inputs(atoms)
    compiled.block = 0
    whole = compiled.compute(*inputs)
    compiled.block = 4  # 3-16 blocks, the last one short
    out = compiled.compute(*inputs)
    _assert_equal_to_eager(out, predict(model, [atoms]))
    torch.testing.assert_close(out["atomic_energies"], whole["atomic_energies"], atol=1e-10, rtol=0)
    torch.testing.assert_close(out["virial"], whole["virial"], atol=1e-10, rtol=0)
    assert out["forces"].abs().max() > 0.1


def test_aoti_sizes_are_dynamic_and_unknown_elements_are_nan(aoti_package):
    model, path = aoti_package
    compiled, _ = load_aoti(str(path))
    big = sicgeo_cell().repeat((3, 3, 3))  # 216 atoms: three times the tracing input, each species more often
    _assert_equal_to_eager(compiled.compute(*_engine_inputs(big)), predict(model, [big]))
    from ase import Atoms

    for small in (Atoms("Si", positions=[[0, 0, 0]]), Atoms("SiH", positions=[[0, 0, 0], [0, 0, 6.0]])):  # E = 0
        _assert_equal_to_eager(compiled.compute(*_engine_inputs(small)), predict(model, [small]))
    # C++ engines (AOTIModelPackageLoader::run) get a flat list, in the documented order
    inputs = _engine_inputs(big)
    flat = compiled.compiled.loader.boxed_run(list(inputs))
    out = compiled.compiled(*inputs)
    for k, name in enumerate(OUTPUTS):
        assert torch.equal(flat[k], out[name])
    atoms = sicgeo_cell()
    atoms.numbers[0] = 32
    out = compiled.compiled(*_engine_inputs(atoms))  # the raw package cannot raise: NaN instead
    assert torch.isnan(out["energy"]) and torch.isnan(out["forces"]).all()
    with pytest.raises(RuntimeError, match="atomic number 32 is not among the model's species"):
        compiled.compute(*_engine_inputs(atoms))


def test_export_check_names_the_graph_that_refuses_a_structure():
    """A compiled graph that refuses the export's check structure (as a size bound compiled in from
    the tracing input would) stops the export with an error naming the package, the graph and the
    structure's size, and pointing to model.pt."""
    from mlip.export.aoti import _run_graph

    def refusing(*inputs):
        raise RuntimeError("Expected u3 <= 24 but received 44")

    inputs = example_inputs(SPECIES, 4.0, torch.float64, torch.device("cpu"), n_atoms=160)
    with pytest.raises(RuntimeError, match=r"model\.pt2: its graph 'paired' refused a structure of 160 atoms.*"
                                           r"Expected u3 <= 24.*not written.*model\.pt"):
        _run_graph("model.pt2", "paired", refusing, inputs)


def test_aoti_package_builds_its_own_neighbour_list(aoti_package):
    """The package's ``neighbors`` graph gives vesin's edge set (triclinic, molecule, a primitive
    cell thinner than the cutoff that needs two images per direction, a slab with a zero third
    row); with it the outputs equal eager. A cell too thin for the image grid is refused."""
    from ase import Atoms
    from ase.build import bulk

    model, path = aoti_package
    compiled, _ = load_aoti(str(path))
    slab = sicgeo_cell()
    slab.pbc = [True, True, False]
    slab.cell[2] = 0.0
    for atoms in (triclinic_si(), ethanol(), sicgeo_cell(), bulk("Si", "diamond", 5.43), slab):
        pos, numbers, cell, pbc, edge_index, shifts = _engine_inputs(atoms)
        own_index, own_shifts, ok = compiled.neighbors(pos, cell, pbc)
        assert bool(ok)
        ours = sorted(zip(*own_index.tolist(), *own_shifts.long().t().tolist()))
        assert ours == sorted(zip(*edge_index.tolist(), *shifts.long().t().tolist()))
        _assert_equal_to_eager(compiled(pos, numbers, cell, pbc), predict(model, [atoms]))
    thin = Atoms("Si", positions=[[0, 0, 0]], cell=[0.9, 8.0, 8.0], pbc=True)  # 0.9 Å < cutoff / 4
    with pytest.raises(RuntimeError, match="built-in neighbour list covers cells at least"):
        compiled(*_engine_inputs(thin)[:4])


def test_aoti_package_runs_where_mlip_cannot_be_imported(aoti_package):
    model, path = aoti_package
    atoms = sicgeo_cell()
    ref = predict(model, [atoms])
    edge_index, shifts, _ = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, 4.0)
    script = WITHOUT_MLIP + textwrap.dedent(f"""
        m = torch._inductor.aoti_load_package({str(path)!r})
        meta = json.loads(m.get_metadata()["mlip_metadata"])
        f64 = torch.float64
        out = m(torch.tensor({atoms.positions.tolist()}, dtype=f64), torch.tensor({atoms.numbers.tolist()}),
                torch.tensor({atoms.cell[:].tolist()}, dtype=f64), torch.tensor([True, True, True]),
                torch.tensor({edge_index.tolist()}), torch.tensor({shifts.tolist()}, dtype=f64))
        nl = torch._inductor.package.load_package({str(path)!r}, "neighbors")
        pos = torch.tensor({atoms.positions.tolist()}, dtype=f64)
        cell = torch.tensor({atoms.cell[:].tolist()}, dtype=f64)
        edges, shifts, ok = nl(pos, cell, torch.tensor([True, True, True]))
        own = m(pos, torch.tensor({atoms.numbers.tolist()}), cell, torch.tensor([True, True, True]), edges, shifts)
        print(json.dumps({{"energy": float(out["energy"]), "forces": out["forces"].tolist(), "meta": meta,
                          "own_energy": float(own["energy"]), "ok": bool(ok)}}))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(got["energy"] - float(ref["total_energy"][0])) < 1e-8
    np.testing.assert_allclose(got["forces"], ref["pred_forces"].numpy(), atol=1e-8)
    assert got["meta"]["cutoff"] == 4.0 and got["meta"]["mlip_version"] and got["meta"]["neighbor_list"] == "caller"
    assert got["ok"] and abs(got["own_energy"] - float(ref["total_energy"][0])) < 1e-8


def test_calculator_on_each_file_kind_agrees(aoti_package, tmp_path):
    from mlip.calculator import MLIPCalculator

    model, pt2 = aoti_package
    pt = tmp_path / "model.pt"
    export_torchscript(model, str(pt))
    atoms = sicgeo_cell()
    ref = predict(model, [atoms])
    for path in (pt, pt2):
        atoms.calc = MLIPCalculator(str(path))
        assert atoms.get_potential_energy() == pytest.approx(float(ref["total_energy"][0]), abs=1e-8)
        assert atoms.get_potential_energy() == atoms.get_total_energy()  # free_energy given
        np.testing.assert_allclose(atoms.get_forces(), ref["pred_forces"].numpy(), atol=1e-8)
        np.testing.assert_allclose(atoms.get_potential_energies().sum(), atoms.get_potential_energy(), atol=1e-8)
        s = ref["pred_stress"][0].numpy()
        np.testing.assert_allclose(atoms.get_stress(), [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]],
                                   atol=1e-10)
    with pytest.raises(ValueError, match="compiled for cpu|torch sees no CUDA device"):
        MLIPCalculator(str(pt2), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_calculator_on_cuda_equals_cpu(tmp_path):
    from mlip.calculator import MLIPCalculator

    model = _mixed_model("invariant")
    pt = tmp_path / "model.pt"
    export_torchscript(model, str(pt))
    pt2 = tmp_path / "model_cuda.pt2"
    export_aoti(model, str(pt2), device="cuda")
    atoms = sicgeo_cell()
    atoms.calc = MLIPCalculator(str(pt), device="cpu")
    e_cpu, f_cpu = atoms.get_potential_energy(), atoms.get_forces()
    for path in (pt, pt2):
        atoms.calc = MLIPCalculator(str(path), device="cuda")
        assert atoms.get_potential_energy() == pytest.approx(e_cpu, abs=1e-8)
        np.testing.assert_allclose(atoms.get_forces(), f_cpu, atol=1e-8)


# ------------------------------------------------------------------ TorchScript without mlip
def test_torchscript_engine_list_runs_where_mlip_cannot_be_imported(tmp_path):
    model = _mixed_model("invariant")
    path = tmp_path / "model.pt"
    export_torchscript(model, str(path))
    atoms = ethanol()
    ref = predict(model, [atoms])
    edge_index, shifts, _ = vesin_neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, 4.0)
    script = WITHOUT_MLIP + textwrap.dedent(f"""
        extra = {{"metadata.json": ""}}
        m = torch.jit.load({str(path)!r}, _extra_files=extra)
        f64 = torch.float64
        out = m.compute(torch.tensor({atoms.positions.tolist()}, dtype=f64), torch.tensor({atoms.numbers.tolist()}),
                        torch.zeros(3, 3, dtype=f64), torch.tensor([False, False, False]),
                        torch.tensor({edge_index.tolist()}), torch.tensor({shifts.tolist()}, dtype=f64))
        print(json.dumps({{"energy": float(out["energy"]), "meta": json.loads(extra["metadata.json"])}}))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(got["energy"] - float(ref["total_energy"][0])) < 1e-8
    assert got["meta"]["dtype"] == "float64"


# ------------------------------------------------------------------ mlip export on a trained run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mlip.cli.config_path import CONFIG_DIR
    from mlip.cli.train import run

    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quick", "trainer.max_epochs=1", "export=false"])
    run(cfg, run_dir)
    return run_dir


def _shipped_frame():
    from pathlib import Path

    from ase.io import read

    import mlip

    return read(Path(mlip.__file__).parent / "datasets" / "mlearn_si" / "Si_test.extxyz", index="3")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_export_command_torchscript_in_both_dtypes(tiny_run, tmp_path, capsys, dtype):
    from mlip.training.checkpoint_load import model_from_checkpoint

    out_path = tmp_path / f"si_{dtype}.pt"
    assert _export_cli(tiny_run, "--dtype", dtype, "--output", out_path) == 0
    assert str(out_path) in capsys.readouterr().out
    scripted, meta = load_exported(str(out_path))
    torch_dtype = getattr(torch, dtype)
    assert meta["dtype"] == dtype and meta["atomic_numbers"] == [14] and meta["mlip_version"]
    assert all(p.dtype == torch_dtype for p in scripted.parameters())
    atoms = _shipped_frame()
    inputs = _engine_inputs(atoms, cutoff=meta["cutoff"], dtype=torch_dtype)
    out = scripted.compute(*inputs)
    assert out["energy"].dtype == torch_dtype and out["forces"].dtype == torch_dtype
    eager = model_from_checkpoint(str(tiny_run / "checkpoints" / "best.ckpt")).to(torch_dtype)
    from mlip.export.torchscript import ExportedPotential

    ref = ExportedPotential(eager, eager.energy_model.species, eager.energy_model.cutoff).compute(*inputs)
    tol = 1e-8 if dtype == "float64" else 1e-3
    assert abs(float(out["energy"] - ref["energy"])) < tol
    torch.testing.assert_close(out["forces"], ref["forces"], atol=tol, rtol=0)


def test_export_command_defaults_to_run_dir_and_checkpoint_dtype(tiny_run):
    assert _export_cli(tiny_run) == 0
    _, meta = load_exported(str(tiny_run / "model.pt"))
    assert meta["dtype"] == "float32"  # the quick run trains in float32


def test_export_command_aoti_float32(tiny_run):
    """A trained float32 run through ``mlip export --format aoti``: the package keeps float32 and
    agrees with the checkpoint (float32 tolerances). Exported with 2 threads, as on a user's
    multi-core machine: Inductor's parallel float32 kernel of the per-structure energy sum (an
    atomic-add scatter) failed to generate there until packages were compiled with one thread."""
    from mlip.calculator import MLIPCalculator

    with _torch_threads(2):
        assert _export_cli(tiny_run / "checkpoints" / "best.ckpt", "--format", "aoti") == 0
    compiled, meta = load_aoti(str(tiny_run / "model.pt2"))
    assert meta["dtype"] == "float32" and meta["atomic_numbers"] == [14]
    atoms = _shipped_frame()
    out = compiled.compute(*_engine_inputs(atoms, cutoff=meta["cutoff"], dtype=torch.float32))
    assert out["energy"].dtype == torch.float32 and out["forces"].dtype == torch.float32
    atoms.calc = MLIPCalculator(str(tiny_run / "checkpoints" / "best.ckpt"))
    assert float(out["energy"]) == pytest.approx(atoms.get_potential_energy(), abs=2e-3)
    np.testing.assert_allclose(out["forces"].numpy(), atoms.get_forces(), atol=1e-4)


def test_export_command_errors(tiny_run, tmp_path, capsys):
    assert _export_cli(tmp_path / "nowhere") == 1
    assert "no such run directory or checkpoint" in capsys.readouterr().err
    assert _export_cli(tmp_path) == 1
    assert "checkpoints/best.ckpt, not found" in capsys.readouterr().err
    assert _export_cli(tiny_run, "--format", "aoti", "--output", tmp_path / "x.pt") == 1
    assert "must end in .pt2" in capsys.readouterr().err
    assert _export_cli(tiny_run, "--format", "lammps", "--output", tmp_path / "lmp") == 1
    assert "no LAMMPS-native form" in capsys.readouterr().err  # neural models go through model.pt


def test_checkpoint_loads_in_its_saved_dtype(tiny_run, tmp_path):
    """A float64 checkpoint stays float64 (Lightning's load_from_checkpoint would give float32)."""
    from mlip.training.checkpoint_load import model_from_checkpoint

    ckpt = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=False)
    ckpt["state_dict"] = {k: v.double() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "f64.ckpt")
    model = model_from_checkpoint(str(tmp_path / "f64.ckpt"))
    assert all(p.dtype == torch.float64 for p in model.parameters())
    name = "model.energy_model.energies.e0"
    assert torch.equal(model.energy_model.energies.e0, ckpt["state_dict"][name])
