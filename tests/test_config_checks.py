"""Settings are checked before any work: every preset composes with every model, and each bad
setting gives a ConfigError naming the key (no data read, no training)."""

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mlip.cli.check_config import check_config
from mlip.cli.config_path import CONFIG_DIR
from mlip.errors import ConfigError
from mlip.models.registry import MODEL_REGISTRY, accepted_keys, build_model

REPO = Path(__file__).resolve().parents[1]
PRESETS = [None] + sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))


def _compose(overrides):
    """The composed ``train.yaml`` config with Hydra command-line ``overrides``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _data_present(cfg) -> bool:
    return all(Path(p).exists() for p in (cfg.data.train, cfg.data.test) if p)


def test_every_model_config_is_registered():
    assert set(MODELS) == set(MODEL_REGISTRY)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_builds_with_every_model(preset, model):
    cfg = _compose(([f"experiment={preset}"] if preset else []) + [f"model={model}"])
    if _data_present(cfg):  # rmd17 lives in ../shared/data of a source checkout
        check_config(cfg)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    species = [1, 6, 8, 14]
    energy_model = build_model(**model_cfg, species=species, e0=[-1.0] * len(species), scale=1.0, shift=0.0,
                               avg_num_neighbors=10.0)
    assert energy_model.species == species and energy_model.cutoff == model_cfg["cutoff"]


def test_quick_preset_keeps_small_models_and_user_overrides():
    assert _compose(["experiment=quick"]).model.num_channels == 6  # configs/experiment_model/quick_invariant
    assert _compose(["experiment=quick", "model.num_channels=3"]).model.num_channels == 3
    assert "num_channels" not in _compose(["experiment=quick", "model=lj"]).model


def test_unknown_model_key_names_it_and_lists_the_model_settings():
    with pytest.raises(ConfigError, match=r"model\.hidden is not a setting of model=lj; its settings are: name, "
                                          r"cutoff, epsilon_init"):
        build_model("lj", species=[14], cutoff=5.0, e0=[0.0], hidden=[32])
    cfg = _compose(["model=lj", "+model.num_channels=6"])
    with pytest.raises(ConfigError, match=r"model\.num_channels is not a setting of model=lj"):
        check_config(cfg)
    assert "num_channels" in accepted_keys("equivariant") and "species" not in accepted_keys("equivariant")


# (config groups, key, bad value, text the message must hold besides the key and the value);
# values are set on a composed config (Hydra's own parsing of strings is covered by the subprocess test)
NAN, INF = float("nan"), float("inf")
BAD = [
    ("", "model.cutoff", 0, "in (0, 30]; the cutoff is a distance in Å"),
    ("", "model.cutoff", -2.5, "in (0, 30]"),
    ("", "model.cutoff", 80, "in (0, 30]"),
    ("", "model.num_channels", 0, "integer >= 1"),
    ("", "model.hidden", [32, 0], "integers >= 1"),
    ("", "model.l_max", -1, ">= 0"),
    ("model=equivariant", "model.correlation", 7, "between 1 and 6"),
    ("model=equivariant model.sh_l_max=3", "model.correlation", 5, "lower model.correlation or model.sh_l_max"),
    ("model=spline_pair", "model.r_min", 6.0, "(0, 5)"),
    ("model=eam", "model.n_rho_knots", 0, "integer >= 1"),
    ("model=morse", "model.D_e_init", -0.5, "> 0"),
    ("", "data.batch_size", 0, "integer >= 1"),
    ("", "data.batch_size", 2.5, "integer >= 1"),
    ("", "data.eval_batch_size", -4, "integer >= 1"),
    ("", "data.num_workers", -1, ">= 0"),
    ("", "data.e0", "banana", "least_squares"),
    ("", "data.allow_missing", ["forces", "charges"], "label kinds"),
    ("", "optimizer.lr", -1, "> 0"),
    ("", "optimizer.lr", 0, "> 0"),
    ("", "optimizer.lr", INF, "finite"),
    ("", "optimizer.lr", NAN, "finite"),
    ("", "optimizer.lr", "fast", "> 0"),
    ("", "optimizer._target_", "torch.nn.Linear", "not a torch.optim.Optimizer"),
    ("", "optimizer.weight_decay", -0.1, ">= 0"),
    ("", "optimizer.ema_decay", 1.0, "[0, 1)"),
    ("", "optimizer.ema_decay", -0.5, "or null"),
    ("", "optimizer.scheduler.factor", 1.5, "(0, 1)"),
    ("", "optimizer.scheduler.factor", 0, "(0, 1)"),
    ("", "optimizer.scheduler.patience", -1, ">= 0"),
    ("", "optimizer.scheduler.min_lr", -1e-5, ">= 0"),
    ("", "optimizer.scheduler.name", "step", "plateau, cosine"),
    ("", "split.val_fraction", 1.0, "[0, 1)"),
    ("", "split.test_fraction", -0.1, "[0, 1)"),
    ("data.test=null split.test_fraction=0.5", "split.val_fraction", 0.6,
     "+ split.test_fraction=0.5 = 1.1 must be < 1"),
    ("split=kfold", "split.k", 1, "at least 2 folds"),
    ("split=kfold", "split.fold", 5, "0..4"),
    ("split=kfold", "split.fold", -1, "[0, 4]"),
    ("split=kfold", "split.val_fraction", 0, "(0, 1)"),
    ("", "trainer.max_epochs", 0, "would train nothing"),
    ("", "trainer.max_epochs", -1, "trainer.max_time"),
    ("", "trainer.max_epochs", -5, "integer >= 1"),
    ("", "trainer.max_epochs", 2.5, "integer >= 1"),
    ("", "trainer.max_time", "banana", "DD:HH:MM:SS"),
    ("", "trainer.max_time", "00:30:00", "DD:HH:MM:SS"),
    ("", "trainer.max_time", 30, "DD:HH:MM:SS"),
    ("", "trainer.max_time", "00:00:00:00", "nothing would be trained"),
    ("", "trainer.max_time", {"hours": -1}, "DD:HH:MM:SS"),
    ("", "trainer.max_time", {"fortnights": 1}, "mapping"),
    ("", "trainer.gradient_clip_val", -1, ">= 0"),
    ("", "trainer.devices", 0, "integer >= 1"),
    ("", "trainer.num_nodes", 0, "integer >= 1"),
    ("", "trainer.accelerator", "quantum", "cpu"),
    ("", "dtype", "float16", "float32, float64"),
    ("", "seed", -3, "integer"),
    ("", "seed", 1.5, "integer"),
    ("", "compile", "yes", "true or false"),
    ("", "loss.sigma.forces", -1, "must be > 0"),
    ("", "loss.sigma.energy", 0, "must be > 0, 'learned', or null"),
    ("", "loss.sigma", "guess", "learned"),
    ("", "loss.sigma", {"energy": None, "forces": None}, "leaves every kind out"),
    ("", "loss.sigma_init.forces", 0, "> 0"),
    ("", "loss.huber_delta", 0, "> 0 or null"),
    ("regularization=l2", "regularization.alpha", -1e-6, ">= 0"),
    ("", "data.train", None, "data=custom data.train="),
]


@functools.lru_cache(maxsize=None)
def _composed(groups: str):
    return _compose(groups.split())


@pytest.mark.parametrize("groups,key,value,text", BAD, ids=[f"{b[1]}={b[2]}" for b in BAD])
def test_bad_setting_names_the_key(groups, key, value, text):
    cfg = copy.deepcopy(_composed(groups))
    OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    message = str(err.value)
    shown = repr(value) if isinstance(value, str) else str(value).replace("None", "null")
    assert message.startswith(key) and (value is None or shown in message), message
    assert text in message, message


def test_hydra_parsed_strings_are_checked_too():
    with pytest.raises(ConfigError, match=r"trainer.max_time='banana' is not a duration; use \"DD:HH:MM:SS\""):
        check_config(_compose(["trainer.max_time=banana"]))
    with pytest.raises(ConfigError, match="optimizer.lr=inf must be a finite number > 0"):
        check_config(_compose(["optimizer.lr=inf"]))


GOOD = [
    ("", {"trainer.max_epochs": -1, "trainer.max_time": "00:00:01:00"}),
    ("", {"trainer.max_time": {"minutes": 30}}),
    ("", {"optimizer.ema_decay": None}), ("", {"optimizer.ema_decay": 0}),
    ("", {"loss.sigma": "learned"}), ("", {"loss.sigma.stress": None}), ("", {"loss.sigma.forces": "learned"}),
    ("", {"trainer.gradient_clip_val": None}), ("", {"trainer.devices": "auto"}),
    ("", {"trainer.accelerator": "cpu", "trainer.devices": 2, "trainer.strategy": "ddp"}),
    ("split=kfold", {"split.k": 3, "split.fold": 2}), ("", {"loss.huber_delta": 1.0}),
    ("", {"data.e0": {"Si": -0.8}}), ("", {"dtype": "float64"}), ("optimizer=sgd", {"optimizer.momentum": 0.5}),
    ("model=equivariant", {"model.size": "medium"}),
]


@pytest.mark.parametrize("groups,values", GOOD, ids=[str(g[1]) for g in GOOD])
def test_good_settings_pass(groups, values):
    cfg = copy.deepcopy(_composed(groups))
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    check_config(cfg)


def test_gpu_without_gpu_says_so_and_how_to_train_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match=r"trainer.accelerator='gpu' but PyTorch sees no GPU.*"
                                          r"trainer.accelerator=cpu"):
        check_config(_compose(["trainer.accelerator=gpu"]))


def test_missing_data_train_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="data.train=.*nope.extxyz: file not found"):
        check_config(_compose(["data=custom", f"data.train={tmp_path / 'nope.extxyz'}"]))


def test_own_train_file_without_data_custom_is_not_tested_on_shipped_si(tmp_path, shipped_train):
    mine = tmp_path / "mine.extxyz"
    mine.write_text("")
    with pytest.raises(ConfigError, match=r"data.test is still the shipped mlearn Si test set.*"
                                          r"python train.py data=custom data.train=.*mine.extxyz"):
        check_config(_compose([f"data.train={mine}"]))
    check_config(_compose(["data=custom", f"data.train={mine}"]))  # the fix the message gives
    theirs = tmp_path / "theirs.extxyz"
    theirs.write_text("")
    check_config(_compose([f"data.train={mine}", f"data.test={theirs}"]))  # an explicit test file
    with pytest.raises(ConfigError, match="data.test=.* is the training file"):
        check_config(_compose(["data=custom", f"data.train={mine}", f"data.test={mine}"]))
    check_config(_compose([f"data.train={shipped_train}"]))  # the shipped file itself


@pytest.mark.slow
def test_train_py_bad_setting_exits_1_naming_the_key_without_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "optimizer.lr=-1", f"hydra.run.dir={tmp_path}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "mlip: error: optimizer.lr=-1 must be a finite number > 0" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


@pytest.mark.parametrize("override, message", [
    ("+loss.foo=1", "loss.foo is not a setting of loss; its settings are: sigma, huber_delta, sigma_init"),
    ("+regularization.beta=1", "regularization.beta is not a setting of regularization"),
    ("+trainer.max_epoch=3", "trainer.max_epoch is not an argument of lightning"),
    ("+trainer.precision=16", "trainer.precision=16 is set by mlip; use dtype="),
    ("loss.sigma=0.05", "loss.sigma=0.05 is one value for every kind"),
    ("+foo=1", "foo is not a setting of train.py"),
    ("data.keys=energy", "data.keys='energy' must be a mapping"),
])
def test_unknown_reserved_or_misshapen_settings_are_named(override, message):
    with pytest.raises(ConfigError) as err:
        check_config(_compose([override]))
    assert message in str(err.value)


def test_a_list_of_training_files_is_refused_with_the_fix(tmp_path, shipped_train):
    with pytest.raises(ConfigError, match=r"data.train=.* must be one file; join several files"):
        check_config(_compose(["data=custom", f"data.train=[{shipped_train},{shipped_train}]"]))
