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
