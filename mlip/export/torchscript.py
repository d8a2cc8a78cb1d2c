"""TorchScript export: ``model.pt`` runs in any process with torch, without importing mlip.

    model = torch.jit.load("model.pt")
    out = model(positions, atomic_numbers, cell, pbc)   # builds its own neighbour list
    out = model.compute(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts)  # engine's list

Inputs: positions [N, 3] Å, atomic_numbers [N] int64, cell [3, 3] Å (rows are lattice vectors),
pbc [3] bool. Floating-point inputs in another dtype are converted to the model's dtype, in which
the outputs come. Atoms closer than ``min_distance`` (Å, an attribute, default 0.1; 0 turns the
check off) raise an error naming them instead of giving NaN. Outputs (dict): ``energy`` [] eV,
``atomic_energies`` [N] eV, ``forces`` [N, 3] eV/Å, ``stress`` [3, 3] eV/Å³ (ASE sign; zero unless
fully periodic) and ``virial`` [3, 3] eV (= -V stress). The file carries ``atomic_numbers``,
``cutoff`` (Å), ``units``, ``dtype``, ``min_distance`` and ``mlip_version`` as attributes and as
``metadata.json``.
"""

import json
from typing import Dict, List, Optional, Tuple

import torch

import mlip
from mlip import keys
from mlip.fileio import atomic_open
from mlip.models.contract import cutoff_of, has_feature_exchange, reads_paired_edges, receptive_field, species_of
from mlip.nn.dispersion import D3Dispersion
from mlip.nn.geometry import MIN_DISTANCE, closest_pair, doubled_edge_list, edge_vectors, overlap_message
from mlip.nn.neighbors import torch_neighbor_list
from mlip.physics import ForcesAndStress

UNITS = {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3",
         "virial": "eV"}


class ExportedPotential(torch.nn.Module):
    """One frame in, energy, forces and stress out. Works eagerly and under ``torch.jit.script``."""
    dtype_probe: torch.Tensor
    species_table: torch.Tensor

    def __init__(self, model: ForcesAndStress, atomic_numbers: List[int], cutoff: float,
                 min_distance: float = MIN_DISTANCE):
        super().__init__()
        self.model = model
        self.atomic_numbers: List[int] = [int(z) for z in atomic_numbers]
        self.cutoff: float = float(cutoff)
        self.mlip_version: str = mlip.__version__
        self.units: Dict[str, str] = dict(UNITS)
        self.dtype_name: str = str(next(model.parameters()).dtype).replace("torch.", "")
        #: Å; atoms closer than this are refused as overlapping (0 turns the check off)
        self.min_distance: float = float(min_distance)
        #: Å, the model's receptive field (read through the model contract when exported)
        self.receptive_field_length: float = receptive_field(model)
        # empty, in the model's dtype (and following .to(dtype)): inputs are converted to its dtype
        self.register_buffer("dtype_probe", torch.zeros(0, dtype=next(model.parameters()).dtype))
        table = torch.full((119,), -1, dtype=torch.long)
        for k, z in enumerate(self.atomic_numbers):
            table[z] = k
        self.register_buffer("species_table", table)
        #: the D3 term's settings ({} without one): engines with ghost atoms add it themselves
        self.dispersion: Dict[str, str] = dispersion_settings(model)
        #: the model evaluates its radial network once per pair when told the edges are paired: an
        #: engine that folds its ghosts then calls ``compute_engine_paired`` with each pair once
        self.paired_route: bool = reads_paired_edges(model)

    def _species_of(self, z: torch.Tensor) -> torch.Tensor:
        """Model species index of each atomic number; a clear error for unknown elements."""
        if bool((z < 0).any()) or bool((z > 118).any()):
            raise RuntimeError("atomic number out of range 0..118")
        species = self.species_table[z]
        if bool((species < 0).any()):
            bad = int(z[species < 0][0])
            raise RuntimeError("element with atomic number " + str(bad) + " is not among the model's species "
                               + str(self.atomic_numbers))
        return species

    def _check_distances(self, data: Dict[str, torch.Tensor]) -> None:
        """A clear error, naming the atoms, when two atoms are closer than ``min_distance``."""
        if self.min_distance > 0.0:
            i, j, d = closest_pair(edge_vectors(data), data[keys.EDGE_INDEX])
            if d < self.min_distance:
                raise RuntimeError(overlap_message(i, j, d, self.min_distance))

    def _graph(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
               edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
        """One structure as the model's batch dict: cell [3, 3] Å and cell_shifts [E, 3] in the
        positions' dtype, pbc [3] bool."""
        z = atomic_numbers.to(torch.long)
        n = positions.shape[0]
        return {
            keys.POSITIONS: positions,
            keys.ATOMIC_NUMBERS: z,
            keys.SPECIES: self._species_of(z),
            keys.BATCH: torch.zeros(n, dtype=torch.long, device=positions.device),
            keys.CELL: cell.unsqueeze(0),
            keys.PBC: pbc.unsqueeze(0),
            keys.N_ATOMS: torch.tensor([n], dtype=torch.long, device=positions.device),
            keys.EDGE_INDEX: edge_index.to(torch.long),
            keys.CELL_SHIFTS: cell_shifts,
        }

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor) -> Dict[str, torch.Tensor]:
        dtype = self.dtype_probe.dtype
        positions, cell = positions.to(dtype), cell.to(dtype)
        edge_index, shifts = torch_neighbor_list(positions, cell, pbc, self.cutoff)
        return self.compute(positions, atomic_numbers, cell, pbc, edge_index, shifts)

    def _checked_graph(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                       pbc: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor,
                       engine: bool = False, paired: bool = False) -> Dict[str, torch.Tensor]:
        """``compute``'s inputs in the model's dtype as a batch, overlapping atoms refused. ``engine``:
        an MD engine calls (``compute_engine``, ``compute_local``) and adds the long-range terms
        itself: D3's lattice sums are left out of the model (LAMMPS: pair_style hybrid/overlay mlip
        dispersion/d3, written from the metadata by ``lammps_run.pair_lines``). ``paired``: the
        edges come in reverse halves (``compute_engine_paired``; ``keys.PAIRED_EDGES``)."""
        dtype = self.dtype_probe.dtype
        data = self._graph(positions.to(dtype), atomic_numbers, cell.to(dtype), pbc.to(torch.bool), edge_index,
                           cell_shifts.to(dtype))
        self._check_distances(data)
        if engine:
            data[keys.ENGINE_ADDS_LONG_RANGE] = torch.zeros(0, device=positions.device)
        if paired:
            data[keys.PAIRED_EDGES] = torch.zeros(0, device=positions.device)
        return data

    @torch.jit.export
    def compute(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self._compute(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts, False)

    @torch.jit.export
    def compute_engine(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                       pbc: torch.Tensor, edge_index: torch.Tensor,
                       cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``compute`` for an engine that folds its ghost atoms onto their owners (LAMMPS on one
        rank): the same outputs, without the long-range terms the engine adds itself (D3)."""
        return self._compute(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts, True)

    @torch.jit.export
    def compute_paired(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                       pbc: torch.Tensor, edge_index: torch.Tensor,
                       cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``compute`` on each pair of a full list once (``edge_index`` [2, G], ``cell_shifts`` [G, 3]:
        ``mlip.nn.geometry.half_edge_list``); the reverses are appended here and the model told
        (``keys.PAIRED_EDGES``). Faster when ``paired_route`` (the ASE calculator uses it then)."""
        edge_index, cell_shifts = doubled_edge_list(edge_index, cell_shifts)
        return self._compute(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts, False, True)

    @torch.jit.export
    def compute_engine_paired(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                              pbc: torch.Tensor, edge_index: torch.Tensor,
                              cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``compute_engine`` on each pair of the folded list once (``edge_index`` [2, G],
        ``cell_shifts`` [G, 3]: ``mlip.nn.geometry.half_edge_list``); the reverses are appended here
        and the model told (``keys.PAIRED_EDGES``). Faster when ``paired_route``."""
        edge_index, cell_shifts = doubled_edge_list(edge_index, cell_shifts)
        return self._compute(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts, True, True)

    def _compute(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                 pbc: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor,
                 engine: bool, paired: bool = False) -> Dict[str, torch.Tensor]:
        data = self._checked_graph(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts, engine, paired)
        positions, cell = data[keys.POSITIONS], data[keys.CELL][0]
        periodic = bool(pbc.all())
        out = self.model(data, compute_forces=True, compute_stress=periodic, create_graph=False)
        stress = out[keys.PRED_STRESS][0] if periodic else torch.zeros((3, 3), dtype=positions.dtype,
                                                                           device=positions.device)
        volume = torch.linalg.det(cell).abs()
        return {
            "energy": out[keys.TOTAL_ENERGY][0].detach(),
            "atomic_energies": out[keys.ATOMIC_ENERGY].detach(),
            "forces": out[keys.PRED_FORCES].detach(),
            "stress": stress.detach(),
            "virial": (-stress * volume).detach(),
        }

    @torch.jit.export
    def receptive_field(self) -> float:
        """Distance (Å) over which an atom's energy depends on other atoms: the model's
        ``receptive_field`` if it has one (message passing: layers x cutoff), else the cutoff.
        An engine's ghost atoms must reach this far (LAMMPS: ``comm_modify cutoff``)."""
        return self.receptive_field_length

    @torch.jit.export
    def compute_local(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                      n_local: int) -> Dict[str, torch.Tensor]:
        """Energy of the first ``n_local`` atoms, for engines with ghost atoms (LAMMPS, MPI domains).

        ``positions`` [N, 3] Å holds local atoms first, then ghosts at their image positions, so
        edge vectors are ``positions[j] - positions[i]`` (no cell shifts); ``edge_index`` [2, E]
        must contain every edge centred on a local atom (and, for message passing, on the ghosts
        within ``receptive_field() - cutoff`` of one). Returns ``energy`` [] (sum over local
        atoms, eV), ``atomic_energies`` [n_local] eV and ``forces`` [N, 3] = -dE/dx eV/Å on every
        atom, ghosts included (the engine adds ghost forces back to their owners)."""
        pos = positions.detach().to(self.dtype_probe.dtype).requires_grad_(True)
        data = self._ghost_graph(pos, atomic_numbers, edge_index)
        atomic = self._local_energies(data, n_local)
        energy = atomic.sum()
        grads = torch.autograd.grad([energy], [pos], allow_unused=True)
        g = grads[0]
        forces = -g if g is not None else torch.zeros_like(pos)
        return {"energy": energy.detach(), "atomic_energies": atomic.detach(), "forces": forces.detach()}

    def _ghost_graph(self, positions: torch.Tensor, atomic_numbers: torch.Tensor,
                     edge_index: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The checked batch of an engine's local and ghost atoms: no cell and no cell shifts (ghosts
        sit at their image positions: ``edge_vectors`` takes r_j - r_i), long-range terms left to the
        engine."""
        dtype, device = self.dtype_probe.dtype, positions.device
        data = self._graph(positions.to(dtype), atomic_numbers, torch.zeros((3, 3), dtype=dtype, device=device),
                           torch.zeros(3, dtype=torch.bool, device=device), edge_index,
                           torch.zeros((0, 3), dtype=dtype, device=device))
        data.pop(keys.CELL_SHIFTS)
        self._check_distances(data)
        data[keys.ENGINE_ADDS_LONG_RANGE] = torch.zeros(0, device=device)
        return data

    def _local_energies(self, data: Dict[str, torch.Tensor], n_local: int) -> torch.Tensor:
        """Per-atom energies [n_local] (eV) of the local atoms, for ``compute_local``."""
        return self.model.energy_model(data)[keys.ATOMIC_ENERGY][:n_local]

    def metadata(self) -> Dict[str, object]:
        return {"atomic_numbers": self.atomic_numbers, "cutoff": self.cutoff, "units": self.units,
                "dtype": self.dtype_name, "min_distance": self.min_distance, "mlip_version": self.mlip_version,
                "dispersion": self.dispersion}


class ExportedExchangePotential(ExportedPotential):
    """``ExportedPotential`` of a message-passing model with the contract's exchange hooks, plus the
    layer-by-layer methods an engine with spatial domains calls to exchange node features between
    layers (LAMMPS on several MPI ranks: ghost atoms then need to reach one cutoff only, not the
    receptive field, and no work is repeated on ghosts). The engine drives the loop and the
    autograd graph it builds across the calls:

        data, h, edges = m.exchange_begin(positions, atomic_numbers, edge_index, n_local)
        # (or m.exchange_begin_paired(..., n_local, n_pairs): the edges of local pairs in reverse halves first)
        y = 0
        for t in range(len(m.exchange_widths())):   # floats per atom of each layer's output
            h_local, y_t = m.exchange_layer(t, h, data, edges); y = y + y_t
            h = [h_local; h_local of each ghost's owner]     # forward exchange (backward: reverse)
        energies = m.exchange_energies(y, data); forces = -d(sum energies)/d(positions)

    ``positions`` [N, 3] Å (local atoms first, then ghosts at their image positions, in the model's
    dtype; the engine's leaf for the gradient), ``edge_index`` [2, E]: every edge centred on a
    local atom, and only those. Features are [n, C, D] (float, the model's dtype); ``y`` and the
    energies [n_local] (eV)."""

    @torch.jit.export
    def exchange_widths(self) -> List[int]:
        return self.model.energy_model.exchange_widths()  # type: ignore[operator]

    @torch.jit.export
    def exchange_begin(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                       n_local: int) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, List[torch.Tensor]]:
        data = self._ghost_graph(positions, atomic_numbers, edge_index)
        h, edges = self.model.energy_model.exchange_begin(data, n_local)  # type: ignore[operator]
        return data, h, edges

    @torch.jit.export
    def exchange_begin_paired(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_index: torch.Tensor,
                              n_local: int, n_pairs: int
                              ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, List[torch.Tensor]]:
        """``exchange_begin`` on edges whose first 2 ``n_pairs`` come in reverse halves (edge g +
        n_pairs is edge g reversed: pairs of local atoms) and whose others have no reverse (local to
        ghost atoms): a model with ``paired_route`` evaluates its radial network once per pair
        (``keys.PAIRED_PREFIX``). The same outputs as ``exchange_begin`` on the same edges."""
        g = n_pairs
        if g < 0 or 2 * g > edge_index.shape[1] or not bool(
                torch.equal(edge_index[:, g:2 * g], edge_index[:, :g].flip(0))):
            raise RuntimeError("exchange_begin_paired: edges " + str(g) + ".." + str(2 * g - 1)
                               + " are not the reverses of edges 0.." + str(g - 1) + " (n_pairs=" + str(g) + ", "
                               + str(edge_index.shape[1]) + " edges); use exchange_begin for edges in any order")
        data = self._ghost_graph(positions, atomic_numbers, edge_index)
        data[keys.PAIRED_PREFIX] = torch.tensor(g, dtype=torch.long, device=positions.device)
        h, edges = self.model.energy_model.exchange_begin(data, n_local)  # type: ignore[operator]
        return data, h, edges

    @torch.jit.export
    def exchange_layer(self, t: int, h: torch.Tensor, data: Dict[str, torch.Tensor],
                       edges: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.model.energy_model.exchange_layer(t, h, data, edges)  # type: ignore[operator]

    @torch.jit.export
    def exchange_energies(self, y: torch.Tensor, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.energy_model.exchange_energies(y, data)  # type: ignore[operator]


def d3_terms(model: torch.nn.Module) -> List[D3Dispersion]:
    """The model's D3 dispersion terms (``model.d3``): none or one."""
    return [m for m in model.modules() if isinstance(m, D3Dispersion)]


def dispersion_settings(model: torch.nn.Module) -> Dict[str, str]:
    """What an engine needs to add the model's D3 term itself: ``{}`` without one, else the functional,
    the damping and the cutoffs (Å) as strings, e.g. for LAMMPS ``pair_style dispersion/d3 bj pbe 31.75 21.17``."""
    for term in d3_terms(model):
        return {"method": "d3", "damping": "bj", "functional": term.functional, "cutoff": repr(term.cutoff),
                "cn_cutoff": repr(term.cn_cutoff)}
    return {}


def call_hooks(model: torch.nn.Module, name: str) -> None:
    """Call the method ``name`` of every submodule of the exporter's copy of ``model`` that has one.
    ``prepare_inference`` switches modules to their inference routes (e.g. the symmetric
    contraction's forces from its forward products): the same energies and first derivatives, no
    parameter gradients and no second derivatives, which an exported potential never needs.
    ``prepare_export`` (AOTInductor only) switches to routes Inductor can compile."""
    for sub in model.modules():
        hook = getattr(sub, name, None)
        if callable(hook):
            hook()


def export_torchscript(model: ForcesAndStress, path: str,
                      dtype: Optional[torch.dtype] = None) -> torch.jit.ScriptModule:
    """Script ``model`` (a ``ForcesAndStress`` around a registry model) and save it to ``path``
    (atomically: a failed write leaves the previous file and raises ``WriteError``)."""
    import copy

    model = copy.deepcopy(model).cpu().eval()  # exported on CPU; load with map_location for GPUs
    if dtype is not None:
        model = model.to(dtype)
    for term in d3_terms(model):  # trained on labels without dispersion (model.d3_in_labels=false): add it now
        term.active = True
    call_hooks(model, "prepare_inference")
    wrapper_class = ExportedExchangePotential if has_feature_exchange(model) else ExportedPotential
    wrapper = wrapper_class(model, species_of(model), cutoff_of(model))
    scripted = torch.jit.script(wrapper)
    with atomic_open(path, "wb") as fh:  # a file object: a full disk raises OSError, not an abort
        torch.jit.save(scripted, fh, _extra_files={"metadata.json": json.dumps(wrapper.metadata())})
    return scripted


def load_exported(path: str, device: str = "cpu") -> Tuple[torch.jit.ScriptModule, Dict[str, object]]:
    """Load ``model.pt`` and its metadata."""
    extra = {"metadata.json": ""}
    module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    return module, json.loads(extra["metadata.json"])
