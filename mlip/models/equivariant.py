"""``model=equivariant``: e3nn message passing in the NequIP / MACE family.

    h^(0)_i = W_embed[Z_i]                                         (C scalars per atom)
    edges:    Y(r_ij) real spherical harmonics (l <= sh_l_max), Bessel basis x polynomial envelope
              -> one radial network giving the tensor-product weights of every layer
    layer t:  h^(t+1) = Interaction_t(h^(t))   (``mlip.nn.equivariant.interaction``: two-body atomic
              basis, products up to ``correlation`` (body order correlation + 1), self-connection;
              ScalarInputInteraction while h is scalar, TensorInputInteraction once it has l >= 1)
    y_i     = sum_t readout_t(scalars of h^(t+1))                  (linear; an MLP after the last)
    E_i     = scale * y_i + shift + E0[Z_i]

Hidden features carry irreps l <= ``l_max`` (C channels each); the last layer keeps scalars only.
``parity=True`` uses O(3) irreps (vectors odd, so energies are invariant under reflections too);
``parity=False`` labels every irrep even, which lets products couple like cross products and
makes the model SO(3)-equivariant only (energies may differ between mirror images).

Size presets (``size``) fill every hyperparameter left ``None``; see ``PRESETS``. The layers are
built from ``mlip.nn.equivariant``; this module chooses and wires them. ``upgrade_state_dict``
maps state dicts of earlier versions of these layers to the current names (the model applies it
itself when loading).
"""

import itertools
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet

from mlip import keys
from mlip.errors import ConfigError
from mlip.models.energy import AtomicEnergies
from mlip.nn.cutoff import PolynomialCutoff
from mlip.nn.equivariant.interaction import Interaction, ScalarInputInteraction, TensorInputInteraction
from mlip.nn.equivariant.irreps import Irrep, irreps_dim, irreps_up_to
from mlip.nn.equivariant.symmetric_contraction import dense_size, species_blocks
from mlip.nn.geometry import edge_vectors, reverse_pair_groups
from mlip.nn.neighbor_slots import neighbour_slots
from mlip.nn.radial import BesselBasis, folded_weight_scales

#: Hyperparameters of each size; any argument given explicitly (not None) overrides its preset.
PRESETS: Dict[str, Dict[str, object]] = {
    # scalar messages between layers (MACE with L=0 hidden features): the fastest per CPU hour
    "small": dict(num_channels=16, l_max=0, sh_l_max=3, num_interactions=2, correlation=3,
                  num_basis=8, radial_hidden=[32, 32], readout_hidden=16, parity=True),
    "medium": dict(num_channels=32, l_max=0, sh_l_max=3, num_interactions=2, correlation=3,
                   num_basis=8, radial_hidden=[64, 64], readout_hidden=16, parity=True),
    # vectors passed between layers: about 6x the cost of small per training step (one CPU thread)
    "large": dict(num_channels=32, l_max=1, sh_l_max=3, num_interactions=2, correlation=3,
                  num_basis=8, radial_hidden=[64, 64, 64], readout_hidden=32, parity=True),
}


#: Ranges of the integer knobs (inclusive).
RANGES: Dict[str, tuple] = {"l_max": (0, 3), "sh_l_max": (1, 3), "num_interactions": (1, 6), "correlation": (1, 6)}
#: Most entries per channel, atom and output component of the symmetric contraction's largest
#: intermediate, D^correlation (D = (sh_l_max + 1)^2): 16^4 at sh_l_max=3, 9^5 at 2, 4^6 at 1.
MAX_DENSE_SIZE = 2 ** 16


def resolve_hyperparameters(size: str, given: Mapping[str, Any]) -> Dict[str, Any]:
    """The preset of ``size`` with the knobs in ``given`` that are not None, checked; raises
    ``ConfigError`` naming the knob. Cheap (no tensors), so ``mlip.cli.check_config`` calls it too."""
    if size not in PRESETS:
        raise ConfigError(f"model.size={size!r}: choose one of {sorted(PRESETS)}")
    hp: Dict[str, Any] = {k: (given[k] if given.get(k) is not None else v) for k, v in PRESETS[size].items()}
    for key, (low, high) in RANGES.items():
        if not low <= int(hp[key]) <= high:
            raise ConfigError(f"model.{key}={hp[key]}: must be between {low} and {high}")
    if int(hp["sh_l_max"]) < int(hp["l_max"]):
        raise ConfigError(f"model.sh_l_max={hp['sh_l_max']} must be >= model.l_max={hp['l_max']}")
    ls_sh = irreps_up_to(int(hp["sh_l_max"]), True)
    if dense_size(ls_sh, int(hp["correlation"])) > MAX_DENSE_SIZE:
        d = irreps_dim(ls_sh)
        raise ConfigError(f"model.correlation={hp['correlation']} with model.sh_l_max={hp['sh_l_max']}: the symmetric "
                          f"contraction would hold {d}^{hp['correlation']} entries per channel and atom (at most "
                          f"{MAX_DENSE_SIZE}); lower model.correlation or model.sh_l_max")
    return hp


def build_interaction(ls_in: List[Irrep], ls_sh: List[Irrep], ls_out: List[Irrep], channels: int, num_species: int,
                      correlation: int, avg_num_neighbors: float) -> Interaction:
    """The layer for inputs with irreps ``ls_in``: the neighbour-slot algorithm for scalars, the
    Clebsch-Gordan one otherwise (the atomic basis has the irreps of the spherical harmonics)."""
    if ls_in == [(0, 1)]:
        return ScalarInputInteraction(ls_sh, ls_out, channels, num_species, correlation, avg_num_neighbors)
    return TensorInputInteraction(ls_in, ls_sh, ls_sh, ls_out, channels, num_species, correlation, avg_num_neighbors)


_OLD_PRODUCT = re.compile(r"^(.*layers\.\d+\.product\.blocks\.\d+\.)([uw])(\d)$")
_OLD_LAYER = re.compile(r"^(.*layers\.\d+\.)u$")
_OLD_DIAGONAL = re.compile(r"^.*layers\.\d+\.diagonal$")


def upgrade_state_dict(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """A state dict of this model from before the layers moved to ``mlip.nn.equivariant`` (one
    ``Interaction`` class for both algorithms, contraction capped at correlation 3) in today's
    names; a current one is returned unchanged. Keys may carry any prefix (``model.energy_model.``).

    - ``...product.blocks.<b>.w<nu>`` -> ``...product.blocks.<b>.orders.<nu-1>.w``; the empty
      placeholders of orders above the model's correlation are dropped (an order is real when
      block 0, the scalar output, has a coupling path for it: it always has one). The coupling
      tensors ``u<nu>`` are dropped: they are constants rebuilt with the model, no longer saved.
    - ``layers.<t>.u, p, path_of_k`` dropped for scalar-input layers (``u`` empty: the
      neighbour-slot algorithm never used them).
    - ``layers.<t>.diagonal`` dropped for every layer: tensor-input layers never used it, and
      scalar-input layers no longer pick diagonal blocks (2026-12-03).
    Returns a new dict; values are not copied."""
    out = dict(state_dict)
    for key in list(out):
        m = _OLD_PRODUCT.match(key)
        if m is None:
            continue
        head, kind, nu = m.group(1), m.group(2), int(m.group(3))
        block0 = re.sub(r"blocks\.\d+\.$", "blocks.0.", head)
        value = out.pop(key)
        if kind == "w" and state_dict[f"{block0}w{nu}"].shape[1] > 0:
            out[f"{head}orders.{nu - 1}.{kind}"] = value
    for key in list(out):
        m = _OLD_LAYER.match(key)
        if m is None or m.group(1) + "diagonal" not in out:  # old layers had both u and diagonal
            continue
        if out[key].numel() == 0:
            for name in ("u", "p", "path_of_k"):
                out.pop(m.group(1) + name, None)
    for key in [k for k in out if _OLD_DIAGONAL.match(k)]:
        out.pop(key)
    return out


def _upgrade_on_load(module: torch.nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: ``upgrade_state_dict`` on this module's keys, in place."""
    mine = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
    upgraded = upgrade_state_dict(mine)
    if upgraded.keys() != mine.keys():
        for key in mine:
            del state_dict[key]
        state_dict.update(upgraded)


class EquivariantModel(torch.nn.Module):
    """Energy model. Batch in (see ``mlip.keys``); adds ``atomic_energy`` [N] and
    ``total_energy`` [B] in eV. Data-derived arguments as in ``mlip.models.registry``."""

    @staticmethod
    def check_settings(settings: Dict[str, Any]) -> None:
        """Ranges and combinations of the knobs (e.g. correlation with sh_l_max), before any data
        is read (``mlip.models.registry.check_model_settings``)."""
        resolve_hyperparameters(settings.get("size") or "small", settings)

    def __init__(self, species: List[int], cutoff: float, e0: List[float], scale: float = 1.0,
                 shift: float = 0.0, avg_num_neighbors: float = 1.0, size: str = "small",
                 num_channels: Optional[int] = None, l_max: Optional[int] = None, sh_l_max: Optional[int] = None,
                 num_interactions: Optional[int] = None, correlation: Optional[int] = None,
                 num_basis: Optional[int] = None,
                 radial_hidden: Optional[List[int]] = None, readout_hidden: Optional[int] = None,
                 parity: Optional[bool] = None, cutoff_p: int = 6):
        super().__init__()
        # e3nn computes Clebsch-Gordan coefficients in the default dtype: build in float64 so that
        # a float64 model is equivariant to 1e-14, then cast to the default dtype
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            self._build(species, cutoff, e0, scale, shift, avg_num_neighbors, size, num_channels, l_max, sh_l_max,
                        num_interactions, correlation, num_basis, radial_hidden, readout_hidden,
                        parity, cutoff_p)
        finally:
            torch.set_default_dtype(default_dtype)
        self.to(default_dtype)

    def _build(self, species: List[int], cutoff: float, e0: List[float], scale: float, shift: float,
               avg_num_neighbors: float, size: str, num_channels: Optional[int], l_max: Optional[int],
               sh_l_max: Optional[int], num_interactions: Optional[int], correlation: Optional[int],
               num_basis: Optional[int], radial_hidden: Optional[List[int]],
               readout_hidden: Optional[int], parity: Optional[bool], cutoff_p: int) -> None:
        given = dict(num_channels=num_channels, l_max=l_max, sh_l_max=sh_l_max, num_interactions=num_interactions,
                     correlation=correlation, num_basis=num_basis,
                     radial_hidden=radial_hidden, readout_hidden=readout_hidden, parity=parity)
        hp = resolve_hyperparameters(size, given)
        self.hparams: Dict[str, str] = {k: str(v) for k, v in hp.items()}
        self.species: List[int] = [int(z) for z in species]
        self.cutoff = float(cutoff)
        self.num_interactions = int(hp["num_interactions"])
        #: Å over which an atom's energy depends on others (ghost-atom depth for LAMMPS / MPI domains)
        self.receptive_field: float = self.num_interactions * self.cutoff
        n_species = len(self.species)
        channels = int(hp["num_channels"])
        parity_ = bool(hp["parity"])
        self.num_channels = channels

        self.embedding = torch.nn.Parameter(torch.randn(n_species, channels))
        self.basis = BesselBasis(cutoff, int(hp["num_basis"]))
        self.envelope = PolynomialCutoff(cutoff, cutoff_p)
        ls_sh = irreps_up_to(int(hp["sh_l_max"]), parity_)
        self.sh = o3.SphericalHarmonics(o3.Irreps([(1, ir) for ir in ls_sh]), normalize=True,
                                        normalization="component")
        #: contract hook: ``exchange_begin`` evaluates the radial network on half of paired edges
        self.reads_paired_edges = True
        ls_h: List[Irrep] = [(0, 1)]
        layers: List[Interaction] = []
        #: floats per atom of each layer's output (channels x irreps dimension)
        self.feature_widths: List[int] = []
        for t in range(self.num_interactions):
            last = t == self.num_interactions - 1
            ls_out = [(0, 1)] if last else irreps_up_to(int(hp["l_max"]), parity_)
            self.feature_widths.append(channels * irreps_dim(ls_out))
            layers.append(build_interaction(ls_h, ls_sh, ls_out, channels, n_species, int(hp["correlation"]),
                                            avg_num_neighbors))
            ls_h = ls_out
        self.layers = torch.nn.ModuleList(layers)
        self.weight_sizes: List[int] = [layer.weight_numel for layer in layers]
        self.radial = FullyConnectedNet([int(hp["num_basis"])] + [int(h) for h in hp["radial_hidden"]]
                                        + [sum(self.weight_sizes)], torch.nn.functional.silu)
        #: the network's constant scales folded into its weights (``folded_weight_scales``)
        self.radial_scales: List[float] = folded_weight_scales(self.radial)
        # each layer's radial weights in the order it reads them (``Interaction.weight_order``):
        # a permutation of the last weight matrix's columns, not of the [E, ...] output
        order: List[int] = []
        for layer, start in zip(layers, [0] + list(itertools.accumulate(self.weight_sizes))):
            order += [start + j for j in (layer.weight_order or range(layer.weight_numel))]
        self.register_buffer("radial_order", torch.tensor(order, dtype=torch.long), persistent=False)
        #: the radial network once per pair of reverse edges (``reverse_pair_groups``): the same
        #: values, half the radial work (training, eager evaluation); the exporters turn it off
        #: (``prepare_inference``: an engine's edges to ghost atoms have no reverse, and the pairing's
        #: sizes are data-dependent)
        self.radial_per_pair = True
        readouts: List[torch.nn.Module] = [torch.nn.Linear(channels, 1) for _ in range(self.num_interactions - 1)]
        readouts.append(torch.nn.Sequential(torch.nn.Linear(channels, int(hp["readout_hidden"])), torch.nn.SiLU(),
                                            torch.nn.Linear(int(hp["readout_hidden"]), 1)))
        self.readouts = torch.nn.ModuleList(readouts)
        for module in self.readouts.modules():  # outputs start near zero, as in the invariant model
            if isinstance(module, torch.nn.Linear) and module.out_features == 1:
                torch.nn.init.normal_(module.weight, std=0.01)
                torch.nn.init.zeros_(module.bias)
        self.energies = AtomicEnergies(e0, scale, shift)
        self.register_load_state_dict_pre_hook(_upgrade_on_load)

    def radial_weights(self, r: torch.Tensor) -> List[torch.Tensor]:
        """Tensor-product weights of each layer, [E, weight_sizes[t]], vanishing at the cutoff; each
        layer's columns in its ``weight_order``. The last weight matrix is split per layer (it is a
        few thousand numbers) rather than the [E, sum(weight_sizes)] output: the backward pass of a
        split output is a concatenation of per-edge gradients (the slowest copy of an MD step)."""
        x = self.basis(r) * self.envelope(r).unsqueeze(-1)
        last = len(self.radial_scales) - 1
        weights: List[torch.Tensor] = []
        for k, layer in enumerate(self.radial):  # = self.radial(x), with two passes fewer per hidden layer
            w = layer.weight * self.radial_scales[k]
            if k < last:
                x = torch.nn.functional.silu(x @ w)
            else:
                for w_t in torch.split(w.index_select(1, self.radial_order), self.weight_sizes, dim=1):
                    weights.append(x @ w_t)
        return weights

    @torch.jit.unused
    def _reverse_pairs(self, data: Dict[str, torch.Tensor]) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """``reverse_pair_groups`` of the batch's edges when ``radial_per_pair`` is on and the model
        runs eagerly: a traced graph (torch.export, make_fx, torch.compile) cannot hold its
        data-dependent sizes."""
        edge_index = data[keys.EDGE_INDEX]
        if (not self.radial_per_pair or torch.compiler.is_compiling()
                or isinstance(edge_index.shape[1], torch.SymInt)):
            return None
        return reverse_pair_groups(edge_index, data[keys.CELL_SHIFTS])

    @torch.jit.unused
    def compile_inputs(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The batch with the index tensors whose sizes depend on the data, computed eagerly, for a
        compiled training step (``mlip.training.compiled_step``): each species' atoms for the
        symmetric contraction (``keys.SPECIES_ATOMS``) and the reverse-edge pairs of the radial
        network (``keys.REVERSE_PAIR_FIRST`` / ``GROUP``). The model reads them when present."""
        data = dict(data)
        if len(self.species) > 1:
            for s, atoms in enumerate(species_blocks(data[keys.SPECIES], len(self.species))):
                data[keys.SPECIES_ATOMS + str(s)] = atoms
        pairs = self._reverse_pairs(data)
        if pairs is not None:
            data[keys.REVERSE_PAIR_FIRST], data[keys.REVERSE_PAIR_GROUP] = pairs
        return data

    @torch.jit.unused
    def prepare_inference(self) -> None:
        """Exporters: the radial network on every edge (see ``radial_per_pair``)."""
        self.radial_per_pair = False

    def radial_features(self, r: torch.Tensor) -> torch.Tensor:
        """All layers' ``radial_weights`` side by side, [E, sum(weight_sizes)]."""
        return torch.cat(self.radial_weights(r), dim=1)

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        species = data[keys.SPECIES]
        h, edges = self.exchange_begin(data, species.shape[0])
        y = torch.zeros(species.shape[0], dtype=h.dtype, device=h.device)
        for t in range(self.num_interactions):
            h, y_t = self.exchange_layer(t, h, data, edges)
            y = y + y_t
        return self.energies(y, data)

    # --- layer by layer, for engines that exchange features between domains (the contract's
    # exchange hooks; ``forward`` is the same computation with every atom a centre) -----------------
    def exchange_widths(self) -> List[int]:
        """Floats per atom of each layer's output features (C x D); the engine exchanges those of
        all layers but the last."""
        return list(self.feature_widths)

    def exchange_begin(self, data: Dict[str, torch.Tensor], n_centres: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """First features h^(0) [N, C, 1] of every atom (from its species alone) and the per-edge
        inputs every layer shares: [Y [E, D_sh], slot [E], Y in slots [n_centres, K, D_sh], then each
        layer's radial weights]. Every edge must be centred on one of the first ``n_centres`` atoms."""
        vec = edge_vectors(data)
        r = torch.linalg.norm(vec, dim=1)
        sh = self.sh(vec)
        slot, sh_padded = neighbour_slots(data[keys.EDGE_INDEX][0], n_centres, sh)
        if keys.PAIRED_EDGES in data:  # edge g + E/2 is edge g reversed: the same distance
            # (the spherical harmonics stay on every edge: Y(-r) = (-1)^l Y(r) as a concatenation made
            # the AOTInductor graph slower, Inductor recomputing them inside each consumer)
            weights = [torch.cat([w, w]) for w in self.radial_weights(r[: r.shape[0] // 2])]
        elif keys.PAIRED_PREFIX in data:  # edges g and g + G (g < G) are reverses; the rest have none
            g = int(data[keys.PAIRED_PREFIX])
            once = self.radial_weights(torch.cat([r[:g], r[2 * g:]]))
            weights = [torch.cat([w[:g], w]) for w in once]  # [w_pairs, w_pairs, w_unpaired]
        else:
            pairs: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
            if keys.REVERSE_PAIR_GROUP in data:  # from compile_inputs
                pairs = (data[keys.REVERSE_PAIR_FIRST], data[keys.REVERSE_PAIR_GROUP])
            elif not torch.jit.is_scripting():
                pairs = self._reverse_pairs(data)
            if pairs is None:
                weights = self.radial_weights(r)
            else:  # once per pair i <-> j (the same distance), gathered to both directions
                first, group = pairs
                weights = [w.index_select(0, group) for w in self.radial_weights(r.index_select(0, first))]
        h = self.embedding.index_select(0, data[keys.SPECIES]).unsqueeze(2)  # [N, C, 1]
        return h, [sh, slot, sh_padded] + list(weights)

    def exchange_layer(self, t: int, h: torch.Tensor, data: Dict[str, torch.Tensor],
                       edges: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Layer ``t`` on features ``h`` [N, C, D] of every atom (centres first): the centres' new
        features [M, C, D'] and their readout [M] (dimensionless, summed over layers into y)."""
        out_h, out_y = h, h.new_zeros(0)
        blocks: Optional[List[torch.Tensor]] = None
        if keys.SPECIES_ATOMS + "0" in data:  # from compile_inputs
            blocks = [data[keys.SPECIES_ATOMS + str(s)] for s in range(len(self.species))]
        for i, (layer, readout) in enumerate(zip(self.layers, self.readouts)):  # TorchScript: no ModuleList[t]
            if i == t:
                out_h = layer(h, data[keys.SPECIES], edges[0], edges[3 + i], data[keys.EDGE_INDEX], edges[1], edges[2],
                              blocks)
                out_y = readout(out_h[:, :, 0]).squeeze(1)
        return out_h, out_y

    def exchange_energies(self, y: torch.Tensor, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-atom energies (eV) [M] of the M centres from their summed readouts ``y`` [M]."""
        return self.energies.of_centres(y, data)

    @torch.no_grad()
    def initialize_from_data(self, batches: Iterable[Dict[str, torch.Tensor]]) -> None:
        """Scale each layer's atomic basis A and product B to unit RMS per irrep on training
        batches, layer after layer (a data-dependent initialisation; float64 accumulation)."""
        batches = list(batches)
        layers: List[Any] = list(self.layers)  # duck-typed: both interaction classes have these stages
        for layer in layers:
            for stage in ("a", "b"):
                got: List[torch.Tensor] = []
                module = layer.linear_a if stage == "a" else layer.linear_out
                hook = module.register_forward_hook(lambda m, inp, out, got=got: got.append(inp[0].detach().double()))
                for batch in batches:
                    self(batch)
                hook.remove()
                x = torch.cat(got)  # [N, C, D]
                irrep = layer.a_irrep if stage == "a" else layer.b_irrep
                sq = torch.zeros(int(irrep.max()) + 1, dtype=torch.float64, device=x.device)
                count = torch.zeros_like(sq)
                sq.index_add_(0, irrep, x.pow(2).sum((0, 1)))
                count.index_add_(0, irrep, torch.full_like(irrep, x.shape[0] * x.shape[1], dtype=torch.float64))
                rms = (sq / count.clamp_min(1.0)).sqrt().index_select(0, irrep)
                norm = layer.a_norm if stage == "a" else layer.b_norm
                norm.mul_(torch.where(rms > 1e-8, 1.0 / rms, torch.ones_like(rms)).to(norm.dtype))

    # ------------------------------------------------------------ optional hooks of the contract
    def smooth_functions(self, n_points: int = 64) -> List[torch.Tensor]:
        """The learned radial functions (tensor-product weights) on a uniform grid over (0, cutoff],
        [num_weights, n_points]."""
        r = torch.linspace(self.cutoff / n_points, self.cutoff, n_points, dtype=self.embedding.dtype,
                           device=self.embedding.device)
        return [self.radial_features(r).transpose(0, 1)]

    def identifiability_parameters(self) -> List[str]:
        """The last readout layer of every interaction, E0, scale and shift."""
        names = []
        for t in range(self.num_interactions):
            last = "2" if t == self.num_interactions - 1 else None
            prefix = f"readouts.{t}." + (f"{last}." if last else "")
            names += [prefix + "weight", prefix + "bias"]
        return names + ["energies.e0", "energies.scale", "energies.shift"]
