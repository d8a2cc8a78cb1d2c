"""``PotentialModule``: the LightningModule that trains any energy model of the registry.

The checkpoint is self-contained: ``hparams.model_config`` holds the model's name, species, E0,
scale and shift, so ``checkpoint_load.module_from_checkpoint(path)`` (also behind
``PotentialModule.load_from_checkpoint``) rebuilds the model without the training data, in its
saved dtype. Every checkpoint written carries its format version (``checkpoint_versions``). No
model-specific code lives here.

Training loss = data loss (``WeightedLoss``, learned sigmas included) + regularisation penalty
(``Regularizer``, from the model's optional hooks). ``train/data_loss``, ``train/penalty`` and
``train/loss`` (their sum) are logged apart; ``val/loss`` is the data loss with fixed sigmas and no
penalty, so checkpoint selection and the learning-rate schedule do not depend on ``alpha`` or on
the current learned sigmas. Each kind's term of ``val/loss`` is its mean over every labelled entry
of the validation split (batch means weighted by their entry counts, summed over ranks), so it does
not depend on how the frames are batched or spread over ranks. Learned sigmas are excluded from weight decay.

The plateau schedule is stepped here, in ``on_train_epoch_end``, not by Lightning: Lightning steps
epoch schedulers after the epoch's checkpoints are written, so a run resumed from ``last.ckpt``
would miss that step. Its state is kept in the checkpoint's ``lr_schedulers`` entry.
"""

from typing import Any, Dict, List, Optional

import lightning as L
import torch

from mlip import keys
from mlip.models import build_model
from mlip.physics import ForcesAndStress
from mlip.training.builders import build_optimizer
from mlip.training.checkpoint_versions import stamp
from mlip.training.compiled_step import CompiledForcesAndStress
from mlip.training.loss import WeightedLoss, residuals
from mlip.training.metrics import MetricAccumulator, WeightedMean
from mlip.training.property_loss import PropertyLoss
from mlip.training.regularization import Regularizer
from mlip.training.schedule import make_scheduler


class PotentialModule(L.LightningModule):
    def __init__(self, model_config: Dict[str, Any], loss_config: Dict[str, Any],
                 optimizer_config: Dict[str, Any], config_types: Optional[List[str]] = None,
                 regularization_config: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.save_hyperparameters()
        self.model = ForcesAndStress(build_model(**model_config))
        loss_config = dict(loss_config)
        self.property_loss = PropertyLoss(loss_config.pop("properties", None))
        self.loss_fn = WeightedLoss(**loss_config)
        self.regularizer = Regularizer(regularization_config, self.model.energy_model, model_config.get("name"))
        self.config_types = list(config_types or ["default"])
        # validation accumulators (torchmetrics, summed across ranks in compute()); built each epoch on
        # the module's device and kept in a dict, not as submodules, so module.to(dtype) leaves them float64
        self._val: Dict[str, Any] = {}
        self._plateau: Optional[torch.optim.lr_scheduler.ReduceLROnPlateau] = None
        self._plateau_state: Optional[Dict[str, Any]] = None  # from a checkpoint, until the scheduler exists
        self._epoch_val_loss: Optional[float] = None  # this epoch's val/loss, for the plateau schedule
        #: the training step's forces through torch.compile (``compile_training_step``); None: eager
        self._compiled: Optional[CompiledForcesAndStress] = None

    def compile_training_step(self, enabled: bool = True, backend: str = "inductor") -> None:
        """``compile=true``: training steps compute energies, forces and stress through one compiled
        graph (``mlip.training.compiled_step``; ``backend`` is torch.compile's); validation stays
        eager. Not a hyperparameter: it changes speed, not results, so checkpoints do not record it."""
        self._compiled = CompiledForcesAndStress(self.model, backend) if enabled else None

    @property
    def energy_model(self) -> torch.nn.Module:
        return self.model.energy_model

    def forward(self, batch: Dict[str, torch.Tensor], create_graph: bool = False) -> Dict[str, torch.Tensor]:
        return self.model(batch, compute_forces=True, compute_stress=True, create_graph=create_graph)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        need_stress = keys.STRESS in self.loss_fn.kinds and bool(batch[keys.STRESS_MASK].any())
        if self._compiled is not None:
            out = self._compiled(batch, compute_forces=True, compute_stress=need_stress)
        else:
            out = self.model(batch, compute_forces=True, compute_stress=need_stress, create_graph=True)
        data_loss, terms = self.loss_fn(out, batch)
        if self.property_loss.active:  # elastic constants of given structures, through the model
            property_term, _ = self.property_loss(self.energy_model)
            terms = {**terms, "properties": property_term}
            data_loss = data_loss + property_term
        loss = data_loss
        if self.regularizer.active:
            penalty = self.regularizer(self.energy_model)
            loss = data_loss + penalty
        else:
            penalty = data_loss.new_zeros(())
        finite = torch.isfinite(loss.detach()).to(torch.float64).reshape(1)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() < 1.0:
            raise FloatingPointError(
                f"training loss is not finite (epoch {self.current_epoch}, batch {batch_idx}, terms "
                f"{ {k: float(v) for k, v in terms.items()} }); stopping. Checkpoints already written are "
                "kept unchanged: resume from last.ckpt with a lower optimizer.lr or a larger loss.sigma.")
        n = int(batch[keys.N_ATOMS].shape[0])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/data_loss", data_loss, batch_size=n)
        self.log("train/penalty", penalty, batch_size=n)
        for kind, term in terms.items():
            self.log(f"train/loss_{kind}", term, batch_size=n)
        return loss

    def on_train_epoch_end(self) -> None:
        for kind, value in self.loss_fn.learned_sigma().items():
            self.log(f"train/sigma_{kind}", value)
        if self._plateau is not None and self._epoch_val_loss is not None:
            self._plateau.step(self._epoch_val_loss)  # before the epoch's checkpoints are written
        self._epoch_val_loss = None

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val = {"metrics": MetricAccumulator(self.config_types, device=self.device),
                     "loss": {kind: WeightedMean(device=self.device) for kind in self.loss_fn.kinds}}

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
        with torch.enable_grad():
            out = self.model(batch, compute_forces=True, compute_stress=True, create_graph=False)
        _, terms = self.loss_fn.validation_loss(out, batch)
        for kind, term in terms.items():  # each kind's mean over this batch's labelled entries
            self._val["loss"][kind].update(term, float(residuals(out, batch, kind).numel()))
        self._val["metrics"].update(out, batch)

    def on_validation_epoch_end(self) -> None:
        val_loss = sum(mean.compute() for mean in self._val["loss"].values())  # over entries, all ranks
        self.log("val/loss", val_loss.float(), prog_bar=True)
        if not self.trainer.sanity_checking:
            self._epoch_val_loss = float(val_loss.float())  # the value Lightning's plateau stepping used
        for name, value in self._val["metrics"].compute().items():
            show = name in ("energy_mae", "forces_mae")
            self.log(f"val/{name}", value, prog_bar=show)
        if self.property_loss.active:
            with torch.enable_grad():
                _, predicted = self.property_loss(self.energy_model, create_graph=False)
            for name, value in predicted.items():
                self.log(f"val/{name}", value)

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        cfg = dict(self.hparams.optimizer_config)
        groups = [{"params": list(self.model.parameters())}]
        loss_params = list(self.loss_fn.parameters())  # learned sigmas: never decayed
        if loss_params:
            groups.append({"params": loss_params, "weight_decay": 0.0})
        opt = build_optimizer(cfg, groups)
        lr = float(opt.defaults["lr"])
        scheduler = make_scheduler(opt, dict(cfg.get("scheduler") or {}), lr, self)
        if isinstance(scheduler["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau):
            self._plateau = scheduler["scheduler"]  # stepped in on_train_epoch_end (see the module docstring)
            self._restore_plateau()
            return {"optimizer": opt}
        self._plateau = None
        return {"optimizer": opt, "lr_scheduler": scheduler}

    # ------------------------------------------------------------------ checkpoint
    @classmethod
    def load_from_checkpoint(  # type: ignore[override]  # narrower than Lightning's: mlip's one checkpoint path
            cls, checkpoint_path, map_location: Any = None, **kwargs: Any) -> "PotentialModule":
        """The module of a ``.ckpt`` by mlip's one checkpoint path (``checkpoint_load``: checked,
        upgraded, in the saved dtype, eval mode), moved to ``map_location`` if given (a device).
        Lightning's other arguments (``hparams_file``, ``strict``, overrides) are not supported."""
        if kwargs:
            raise TypeError(f"PotentialModule.load_from_checkpoint: unsupported arguments {sorted(kwargs)}")
        from mlip.training.checkpoint_load import module_from_checkpoint

        module = module_from_checkpoint(str(checkpoint_path))
        return module.to(map_location) if isinstance(map_location, (str, torch.device)) else module

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        stamp(checkpoint)
        if self._plateau is not None:
            checkpoint["lr_schedulers"] = [self._plateau.state_dict()]

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        states = checkpoint.get("lr_schedulers") or []
        self._plateau_state = states[0] if states and "num_bad_epochs" in states[0] else None
        self._restore_plateau()

    def _restore_plateau(self) -> None:
        if self._plateau is not None and self._plateau_state is not None:
            self._plateau.load_state_dict(self._plateau_state)
            self._plateau_state = None
