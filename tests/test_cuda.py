"""CUDA paths: run on a machine with a GPU (skipped, with the reason, elsewhere)."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from mlip.cli.config_path import CONFIG_DIR
from mlip.cli.train import run
from mlip.testing.systems import make_model, predict, sicgeo_cell

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_model_on_cuda_equals_cpu():
    model = make_model("invariant", [1, 6, 8, 14], calibrate_on=[sicgeo_cell()])
    ref = predict(model, [sicgeo_cell()])
    from mlip.testing.systems import batch_of

    batch = {k: v.cuda() for k, v in batch_of([sicgeo_cell()], model).items()}
    out = model.cuda()(batch, compute_forces=True, compute_stress=True)
    torch.testing.assert_close(out["total_energy"].cpu(), ref["total_energy"], atol=1e-9, rtol=0)
    torch.testing.assert_close(out["pred_forces"].cpu(), ref["pred_forces"], atol=1e-9, rtol=0)
    torch.testing.assert_close(out["pred_stress"].cpu(), ref["pred_stress"], atol=1e-11, rtol=0)


def test_gpu_training_run_and_cuda_calculator(tmp_path):
    from mlip.calculator import MLIPCalculator

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quick", "trainer.accelerator=gpu", "trainer.devices=1"])
    results = run(cfg, tmp_path)
    assert results["test"]["forces_mae"] < 600
    atoms = sicgeo_cell()
    atoms.numbers[:] = 14
    atoms.calc = MLIPCalculator(results["exported_model"], device="cuda")
    e_gpu = atoms.get_potential_energy()
    atoms.calc = MLIPCalculator(results["exported_model"], device="cpu")
    assert abs(atoms.get_potential_energy() - e_gpu) < 1e-3


def test_compiled_training_step_on_cuda_equals_eager():
    """``compile=true`` on a GPU: the training step compiled by Inductor (Triton kernels) gives the
    eager step's energies, forces, stress and parameter gradients (float64, two batches of other
    sizes, the second without compiling again)."""
    from mlip import keys
    from mlip.testing.systems import batch_of, ethanol, triclinic_si
    from mlip.training.compiled_step import CompiledForcesAndStress

    model = make_model("equivariant", [1, 6, 8, 14], num_channels=8, num_interactions=2).train().cuda()
    compiled = CompiledForcesAndStress(model)
    batches = [batch_of([sicgeo_cell(), ethanol()], model),
               batch_of([triclinic_si(seed=1), triclinic_si(seed=2).repeat((2, 1, 1)), ethanol(seed=3)], model)]
    assert batches[0][keys.POSITIONS].shape[0] != batches[1][keys.POSITIONS].shape[0]
    params = [p for p in model.parameters() if p.requires_grad]
    for batch in batches:
        batch = {k: v.cuda() for k, v in batch.items()}
        results = []
        for out in (model(batch, compute_forces=True, compute_stress=True, create_graph=True),
                    compiled(batch, compute_forces=True, compute_stress=True)):
            loss = out["total_energy"].sum() + out["pred_forces"].pow(2).sum() + out["pred_stress"].pow(2).sum()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            results.append([out["total_energy"], out["pred_forces"], out["pred_stress"]]
                           + [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)])
        assert compiled.failure is None, compiled.failure
        for x, y in zip(results[1], results[0]):
            torch.testing.assert_close(x, y, atol=1e-9, rtol=1e-7)


def test_gpu_training_run_with_compile(tmp_path):
    """``python train.py experiment=quick model=equivariant compile=true`` on a GPU trains and
    exports (the compiled step in a real Lightning run on CUDA)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quick", "model=equivariant", "model.size=small", "compile=true",
                                          "trainer.accelerator=gpu", "trainer.devices=1"])
    results = run(cfg, tmp_path)
    assert results["test"]["forces_mae"] < 1000
