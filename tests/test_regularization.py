"""Regularisation penalties: hand computations, what L2 leaves out, the invariant model's radial
functions, and errors for models without the smoothness hook."""

import lightning
import pytest
import torch

from mlip import keys
from mlip.errors import ConfigError
from mlip.models import build_model
from mlip.testing.systems import SMALL_MODEL_CONFIGS, batch_of
from mlip.training.module import PotentialModule
from mlip.training.regularization import Regularizer, l2_parameters

ALPHA = 0.5


class Tabulated(torch.nn.Module):
    """A stand-in for a tabulated potential: knot values on uniform grids."""

    def __init__(self):
        super().__init__()
        self.knots = torch.nn.Parameter(torch.tensor([0.0, 1.0, 4.0, 9.0, 16.0], dtype=torch.float64))
        self.table = torch.nn.Parameter(torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, 3.0]], dtype=torch.float64))

    def smooth_functions(self):
        return [self.knots, self.table]


def _invariant(species=(8, 14), **kw):
    torch.manual_seed(0)
    return build_model("invariant", species=list(species), cutoff=4.0, e0=[-1.0] * len(species), scale=0.7,
                       shift=0.1, avg_num_neighbors=1.0, **{**SMALL_MODEL_CONFIGS["invariant"], **kw}).double()


def test_smoothness_penalty_equals_hand_computation():
    model = Tabulated()
    penalty = Regularizer({"name": "smoothness", "alpha": ALPHA}, model)(model)
    # knots (squares): second differences 2, 2, 2 -> 12; table rows: 1 - 4 + 4 = 1 and 0 - 0 + 3 = 3 -> 10
    assert float(penalty) == pytest.approx(ALPHA * (12.0 + 10.0))
    penalty.backward()
    # d/dv of alpha * sum_i (v[i-1] - 2 v[i] + v[i+1])^2 with all second differences 2: the ends
    # appear once (2 alpha * 2), the next ones in two terms (2 alpha * (2 - 2*2)), the middle in three
    assert model.knots.grad.tolist() == pytest.approx([2 * ALPHA * 2, 2 * ALPHA * (-2 * 2 + 2),
                                                       2 * ALPHA * (2 - 4 + 2), 2 * ALPHA * (-4 + 2), 2 * ALPHA * 2])


def test_l2_penalty_is_sum_of_squares_and_excludes_e0_scale_shift():
    model = _invariant()
    buffers = {id(b) for b in (model.energies.e0, model.energies.scale, model.energies.shift)}
    assert not buffers & {id(p) for p in l2_parameters(model)}
    reg = Regularizer({"name": "l2", "alpha": ALPHA}, model)
    expected = ALPHA * sum(float((p ** 2).sum()) for _, p in model.named_parameters())
    assert float(reg(model)) == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():  # E0, scale and shift do not enter the penalty
        model.energies.e0.add_(10.0)
        model.energies.scale.mul_(5.0)
        model.energies.shift.add_(3.0)
    assert float(reg(model)) == pytest.approx(expected, rel=1e-12)


def test_l2_uses_the_model_hook_when_present():
    model = Tabulated()
    model.l2_parameters = lambda: [model.knots]
    assert float(Regularizer({"name": "l2", "alpha": 2.0}, model)(model)) == pytest.approx(2.0 * (1 + 16 + 81 + 256))


def test_smoothness_without_hook_is_a_config_error():
    with pytest.raises(ConfigError, match=r"regularization=smoothness.*model.name=lj"):
        Regularizer({"name": "smoothness", "alpha": 1.0}, torch.nn.Linear(2, 1), "lj")
    with pytest.raises(ConfigError, match="regularization.alpha"):
        Regularizer({"name": "l2", "alpha": -1.0}, torch.nn.Linear(2, 1))
    with pytest.raises(ConfigError, match="regularization='l1'"):
        Regularizer({"name": "l1", "alpha": 1.0}, torch.nn.Linear(2, 1))


def test_l2_on_a_model_without_l2_parameters_is_a_config_error():
    """LJ and Morse have no parameters L2 acts on: an L2 run would silently be an unregularised one."""
    lj = build_model("lj", species=[18], cutoff=6.0, e0=[0.0])
    assert l2_parameters(lj) == []
    with pytest.raises(ConfigError, match=r"regularization=l2 would do nothing: model.name=lj"):
        Regularizer({"name": "l2", "alpha": 1.0}, lj, "lj")
    Regularizer({"name": "l2", "alpha": 0.0}, lj, "lj")  # alpha 0 (a CV sweep's first point) is allowed
    Regularizer({"name": "none"}, lj, "lj")


def test_invariant_radial_functions_shape_and_model_values():
    model = _invariant()
    (v,) = model.smooth_functions(32)
    c, l = SMALL_MODEL_CONFIGS["invariant"]["num_channels"], SMALL_MODEL_CONFIGS["invariant"]["l_max"]
    assert v.shape == (4, c, l + 1, 32)
    # the two-body features of a dimer are R_{c,0}(r) (Y_00 = 1, one neighbour, <n> = 1): the hook
    # samples exactly the functions the model uses
    from ase import Atoms
    r0 = 4.0 * 20 / 32  # grid point g = 20
    dimer = Atoms("OSi", positions=[[0, 0, 0], [r0, 0, 0]])
    feats = model.descriptor(batch_of([dimer], model))
    h = 4.0 / 32
    pair_o_si = 0 * 2 + 1  # centre O (index 0), neighbour Si (index 1)
    assert torch.allclose(feats[0, :c], v[pair_o_si, :, 0, 19] * h ** 1.5, rtol=1e-10)


def test_invariant_smoothness_responds_to_weights_and_is_grid_consistent():
    model = _invariant(species=(14,))
    reg = Regularizer({"name": "smoothness", "alpha": 1.0}, model)
    p0 = reg(model)
    p0.backward()
    assert model.descriptor.radial_weights.grad.abs().sum() > 0
    with torch.no_grad():
        model.descriptor.radial_weights.mul_(2.0)
    assert float(reg(model)) == pytest.approx(4.0 * float(p0), rel=1e-10)
    # scaled by h^-3/2, the sum approximates the integral of R''^2 (first order in h; without the
    # scaling a 4x finer grid would give 64x less): nearly the same on a finer grid
    def curvature(n):
        return sum(float((v[..., :-2] - 2 * v[..., 1:-1] + v[..., 2:]).detach().pow(2).sum())
                   for v in model.smooth_functions(n))
    assert curvature(256) == pytest.approx(curvature(1024), rel=0.05)
    with torch.no_grad():
        model.descriptor.radial_weights.zero_()
    assert float(reg(model)) == 0.0


MODEL_CONFIG = dict(name="invariant", species=[14], cutoff=4.0, e0=[-1.0], scale=1.0, shift=0.0,
                    avg_num_neighbors=1.0, **SMALL_MODEL_CONFIGS["invariant"])


def test_learned_sigmas_are_not_decayed_or_penalised():
    module = PotentialModule(MODEL_CONFIG, {"sigma": {"energy": "learned", "forces": 0.05}},
                             {"lr": 1e-3, "weight_decay": 0.1}, regularization_config={"name": "l2", "alpha": 1.0})
    groups = module.configure_optimizers()["optimizer"].param_groups
    sigma = module.loss_fn.log_sigma["energy"]
    assert [g["weight_decay"] for g in groups if any(p is sigma for p in g["params"])] == [0.0]
    assert all(not any(p is sigma for p in g["params"]) for g in groups if g["weight_decay"] > 0)
    before = float(module.regularizer(module.energy_model))
    with torch.no_grad():
        sigma.add_(3.0)
    assert float(module.regularizer(module.energy_model)) == before


def test_checkpoint_without_new_arguments_still_loads(tmp_path):
    """Checkpoints of runs before regularisation and learned sigmas (no regularization_config)."""
    module = PotentialModule(MODEL_CONFIG, {"sigma": {"energy": 0.01, "forces": 0.05}}, {"lr": 1e-3})
    ckpt = {"state_dict": module.state_dict(), "pytorch-lightning_version": lightning.__version__,
            "hyper_parameters": {"model_config": MODEL_CONFIG,
                                 "loss_config": {"sigma": {"energy": 0.01, "forces": 0.05}},
                                 "optimizer_config": {"lr": 1e-3}, "config_types": ["default"]}}
    torch.save(ckpt, tmp_path / "old.ckpt")
    loaded = PotentialModule.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu")
    assert not loaded.regularizer.active and loaded.loss_fn.learned_kinds == ()
    name = "model.energy_model.descriptor.radial_weights"
    assert torch.equal(loaded.state_dict()[name], module.state_dict()[name])
    assert keys.FORCES in loaded.loss_fn.kinds


def test_smoothness_on_a_model_without_tabulated_functions_is_a_config_error():
    """lj has the hook but no function to smooth: alpha > 0 would silently do nothing."""
    from mlip.testing.systems import make_model

    lj = make_model("lj", species=[14]).energy_model
    with pytest.raises(ConfigError, match="regularization=smoothness .* would do nothing"):
        Regularizer({"name": "smoothness", "alpha": 1.0}, lj, "lj")
