"""Config groups build the objects: any torch.optim class, loggers and callbacks from their
``_target_`` entries, unknown keys refused by name before any work."""


import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mlip.cli.check_config import check_config
from mlip.cli.config_path import CONFIG_DIR
from mlip.cli.train import build_datamodule, run
from mlip.errors import ConfigError
from mlip.training.builders import build_named, build_optimizer


def _compose(overrides=()):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _params():
    return [{"params": [torch.nn.Parameter(torch.zeros(3))]}]


@pytest.mark.parametrize("preset, cls", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_optimizer_group_builds_its_class_with_its_arguments(preset, cls):
    cfg = OmegaConf.to_container(_compose([f"optimizer={preset}", "optimizer.lr=0.02"]).optimizer)
    opt = build_optimizer(cfg, _params())
    assert type(opt) is cls and opt.defaults["lr"] == 0.02
    if preset == "sgd":
        assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"] is True


def test_any_torch_optim_class_by_override_and_unknown_arguments_named():
    cfg = _compose(["optimizer._target_=torch.optim.RMSprop", "~optimizer.amsgrad"])
    check_config(cfg)
    assert type(build_optimizer(OmegaConf.to_container(cfg.optimizer), _params())) is torch.optim.RMSprop
    cfg = _compose(["+optimizer.momentum=0.9"])  # AdamW has no momentum
    with pytest.raises(ConfigError, match=r"optimizer.momentum is not an argument of torch.optim.adamw.AdamW; "
                                          r"its arguments are: lr, betas"):
        check_config(cfg)
    with pytest.raises(ConfigError, match=r"optimizer._target_='torch.optim.Adamm': torch.optim has no 'Adamm'"):
        check_config(_compose(["optimizer._target_=torch.optim.Adamm"]))


def test_old_checkpoint_optimizer_config_without_target_is_adamw():
    opt = build_optimizer({"name": "adamw", "lr": 1e-3, "ema_decay": 0.99, "scheduler": {"name": "plateau"}},
                          _params())
    assert type(opt) is torch.optim.AdamW


def test_loggers_and_callbacks_from_their_groups(tmp_path):
    cfg = _compose(["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=3"])
    callbacks = build_named(OmegaConf.to_container(cfg.callbacks), "callbacks")
    assert [type(c).__name__ for c in callbacks] == ["LearningRateMonitor", "EarlyStopping"]
    assert callbacks[1].patience == 3
    loggers = build_named(OmegaConf.to_container(cfg.logger), "logger", save_dir=str(tmp_path))
    assert [type(x).__name__ for x in loggers] == ["CSVLogger", "TensorBoardLogger"]
    assert all(str(x.save_dir) == str(tmp_path) for x in loggers)
    with pytest.raises(ConfigError, match=r"callbacks.early_stopping.patients is not an argument of "
                                          r"lightning.pytorch.callbacks.early_stopping.EarlyStopping"):
        build_named({"early_stopping": {"_target_": "lightning.pytorch.callbacks.EarlyStopping",
                                        "patients": 3}}, "callbacks")


def test_a_logger_whose_package_is_missing_names_what_to_install(monkeypatch):
    with pytest.raises(ConfigError, match=r"logger.fancy._target_='no_such_package.Logger': cannot import "
                                          r"no_such_package .*pip install no_such_package"):
        build_named({"fancy": {"_target_": "no_such_package.Logger"}}, "logger")


@pytest.mark.parametrize("override, key", [("+data.bach_size=4", "data.bach_size"),
                                           ("+split.folds=3", "split.folds")])
def test_unknown_data_or_split_key_is_refused_by_name(override, key):
    with pytest.raises(ConfigError, match=rf"{key} is not a setting of {key.split('.')[0]}; its settings are"):
        build_datamodule(_compose([override]), torch.float32)


@pytest.mark.slow
def test_a_run_with_sgd_early_stopping_and_no_tensorboard(tmp_path):
    cfg = _compose(["experiment=quick", "optimizer=sgd", "optimizer.lr=0.001", "callbacks=[default,early_stopping]",
                    "logger.tensorboard=null", "trainer.max_epochs=2", "export=false"])
    results = run(cfg, tmp_path)
    assert results["epochs"] == 2
    assert list(tmp_path.glob("logs/version_*/metrics.csv")) and not (tmp_path / "tb").exists()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert "momentum_buffer" in str(ckpt["optimizer_states"][0]["state"]) or ckpt["optimizer_states"]
