"""Write tests/data/checkpoints/v1_lj.ckpt (+ structure and expected energy) with the code at the
current commit; run from the repository root. Kept as the record of how the stored file was made:
do not rerun it with newer code (see README.md)."""
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from ase.io import read, write
from hydra import compose, initialize_config_dir

from mlip.calculator import MLIPCalculator
from mlip.cli.config_path import CONFIG_DIR
from mlip.cli.train import run

out = Path("tests/data/checkpoints")
tmp = Path(tempfile.mkdtemp())
frames = read("mlip/datasets/mlearn_si/Si_training.extxyz", index="::20")[:8]
write(tmp / "si8.extxyz", frames)
ov = ["experiment=quick", "model=lj", f"data.train={tmp/'si8.extxyz'}", "data.test=null", "split.test_fraction=0",
      "split.val_fraction=0.25", "data.batch_size=4", "dtype=float64", "export=false", "trainer.max_epochs=1", "seed=0"]
with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
    cfg = compose("train", overrides=ov)
run(cfg, tmp / "run")
shutil.copy(tmp / "run" / "checkpoints" / "last.ckpt", out / "v1_lj.ckpt")
structure = frames[0].copy()
structure.calc = None
write(out / "v1_lj_structure.extxyz", structure)

atoms = read(out / "v1_lj_structure.extxyz")
atoms.calc = MLIPCalculator(str(out / "v1_lj.ckpt"))
e = atoms.get_potential_energy()
f = atoms.get_forces()
commit = subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()
json.dump({"structure": "v1_lj_structure.extxyz", "energy_eV": float(e), "forces_eV_per_A_atom0": f[0].tolist(),
           "n_atoms": len(atoms), "written_by_commit": commit, "mlip_version": "0.1.0", "overrides": ov},
          open(out / "v1_lj_expected.json", "w"), indent=1)
print(e, (out / "v1_lj.ckpt").stat().st_size)
