"""AOTInductor export: ``model.pt2``, a compiled package that runs in any process with torch.

    model = torch._inductor.aoti_load_package("model.pt2")
    out = model(positions, atomic_numbers, cell, pbc, edge_index, cell_shifts)
    meta = model.get_metadata()          # str -> str; "mlip_metadata" holds all of it as JSON

The package holds two or three compiled graphs. ``model`` (loaded by default) takes the caller's
neighbour list, as MD engines supply it. ``neighbors`` builds one itself (a brute-force list,
O(N^2 x cell images), for small systems and scripts without an engine). ``local``, in packages of
mlip's invariant model (no message passing), takes an engine's local and ghost atoms and computes
descriptors of the local atoms only (``LocalEnginePotential``; LAMMPS on several MPI ranks):

    nl = torch._inductor.package.load_package("model.pt2", "neighbors")
    edge_index, cell_shifts, ok = nl(positions, cell, pbc)   # ok False: cell thinner than cutoff/4

Inputs, all on the device the package was compiled for: positions [N, 3] Å (model dtype),
atomic_numbers [N] int64, cell [3, 3] Å (rows are lattice vectors; zeros for a molecule, model
dtype), pbc [3] bool, edge_index [2, E] int64 (full list: both i->j and j->i), cell_shifts [E, 3]
(model dtype) with r_ij = r_j - r_i + S @ cell. N and E are dynamic (compiled for N, E >= 2;
one atom and E = 0 give correct results too). Outputs
(dict): ``energy`` [] eV, ``atomic_energies`` [N] eV, ``forces`` [N, 3] eV/Å, ``stress`` [3, 3]
eV/Å³ (ASE sign; zero unless fully periodic), ``virial`` [3, 3] eV (= -V stress). C++ loaders
(``AOTIModelPackageLoader::run``) get the same five tensors in that order. An element the model
does not know makes every output NaN (a compiled graph cannot raise); nor does the graph check for
overlapping atoms: ``AOTIPotential`` (mlip's loader, used by the ASE calculator) checks both.

Forces and stress need ``torch.autograd.grad`` inside the program. ``torch.export`` on its own
turns tensors saved for the backward pass into (fake) constants, so the model is first traced
with ``make_fx`` (symbolic shapes), which unrolls autograd into plain aten operations, and the
resulting graph is then exported with dynamic N and E and compiled (the route NequIP takes).
"""

import copy
import json
from typing import Any, Dict, List, Optional, Tuple

import torch

import mlip
from mlip import keys
from mlip.errors import ConfigError
from mlip.export.torchscript import UNITS, call_hooks, d3_terms
from mlip.fileio import atomic_path
from mlip.models.contract import cutoff_of, has_feature_exchange, reads_paired_edges, receptive_field, species_of
from mlip.nn.geometry import MIN_DISTANCE, closest_pair, doubled_edge_list, half_edge_list, overlap_message
from mlip.nn.neighbors import ExportableNeighborList, torch_neighbor_list
from mlip.physics import ForcesAndStress

OUTPUTS = ("energy", "atomic_energies", "forces", "stress", "virial")
#: atoms of the tracing input. Inductor (torch 2.13) takes some decisions on the tracing input's sizes
#: and keeps them as bounds: below 33 atoms, its decomposition of a small matrix product
#: (``_inductor/decomposition.py: mm``, "numel <= 32") bounded N by the tracing input plus a few, and
#: with it each species' atom count (unbacked sizes <= N), so a several-species equivariant package
#: refused larger structures ("Expected u3 <= 24"). Above that threshold the same test becomes a
#: lower bound that no compiled code relies on. The graph ``local`` traces half of them as its local
#: atoms (36), above the threshold too.
TRACE_ATOMS = 72
#: atoms of the structure on which ``export_aoti`` checks the compiled package after the tracing
#: input: several times as many atoms of each species, so that a size bound taken from the tracing
#: input fails the export instead of the user's run
CHECK_ATOMS = 160
#: atoms per call of the graph ``local`` when ``AOTIPotential`` evaluates a larger structure in blocks
#: (as ``pair_style mlip block N`` does): each block's per-edge tensors stay in the CPU's cache
LOCAL_BLOCK = 512


class EnginePotential(torch.nn.Module):
    """Energy, forces and stress from an engine's neighbour list, written for ``torch.export``:
    no Python branch on tensor values (checks become NaN outputs instead of exceptions)."""
    species_table: torch.Tensor

    def __init__(self, model: ForcesAndStress, atomic_numbers: List[int], paired: bool = False):
        super().__init__()
        self.model = model
        self.register_buffer("species_table", _species_table(atomic_numbers))
        #: the graph ``paired``: ``edge_index`` [2, G] and ``cell_shifts`` [G, 3] hold each pair of a
        #: full list once (``mlip.nn.geometry.half_edge_list``); the reverses are appended here and
        #: the model told (``keys.PAIRED_EDGES``), so it evaluates its edge functions on G edges
        self.paired = paired

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
        species, bad = _species(self.species_table, atomic_numbers, positions.dtype)
        if self.paired:
            edge_index, cell_shifts = doubled_edge_list(edge_index, cell_shifts)
        data = _engine_batch(positions, atomic_numbers, species, cell, pbc, edge_index, cell_shifts)
        if self.paired:
            data[keys.PAIRED_EDGES] = edge_index.new_zeros(0)
        out = self.model(data, compute_forces=True, compute_stress=True, create_graph=False)
        stress = out[keys.PRED_STRESS][0] + bad
        volume = torch.linalg.det(cell).abs()
        return {
            "energy": out[keys.TOTAL_ENERGY][0] + bad,
            "atomic_energies": out[keys.ATOMIC_ENERGY] + bad,
            "forces": out[keys.PRED_FORCES] + bad,
            "stress": stress,
            "virial": -stress * volume,
        }


class LocalEnginePotential(torch.nn.Module):
    """Energy and forces of an engine's local atoms for a model without message passing (one
    layer of the contract's exchange hooks, receptive field = cutoff), the package's graph
    ``local``: LAMMPS on several MPI ranks or in a box with a non-periodic direction, where ghost
    atoms are not folded onto their owners. Descriptors and readouts run on the local atoms only
    (the graph ``model`` would run them on every ghost too).

    Inputs: ``local_positions`` [n_local, 3] and ``ghost_positions`` [n_ghost, 3] Å (ghosts at
    their image positions: edges need no shifts; model dtype), ``local_numbers`` [n_local] and
    ``ghost_numbers`` [n_ghost] int64, ``edge_index`` [2, E] over the concatenated atoms (locals
    first), every edge centred on a local atom. Outputs: ``energy`` [] (sum over the local atoms,
    eV), ``atomic_energies`` [n_local] eV, ``forces`` [n_local + n_ghost, 3] eV/Å (the engine adds
    the ghosts' forces to their owners). Unknown elements give NaN outputs."""
    species_table: torch.Tensor

    def __init__(self, model: ForcesAndStress, atomic_numbers: List[int]):
        super().__init__()
        self.model = model
        self.register_buffer("species_table", _species_table(atomic_numbers))

    def forward(self, local_positions: torch.Tensor, ghost_positions: torch.Tensor, local_numbers: torch.Tensor,
                ghost_numbers: torch.Tensor, edge_index: torch.Tensor) -> Dict[str, torch.Tensor]:
        energy_model: Any = self.model.energy_model
        positions = torch.cat([local_positions, ghost_positions]).detach().requires_grad_(True)
        numbers = torch.cat([local_numbers, ghost_numbers])
        species, bad = _species(self.species_table, numbers, positions.dtype)
        dtype, device = positions.dtype, positions.device
        # an open graph: ghosts at their image positions, so no cell and no shifts
        data = _engine_batch(positions, numbers, species, torch.zeros((3, 3), dtype=dtype, device=device),
                             torch.zeros(3, dtype=torch.bool, device=device), edge_index,
                             torch.zeros((edge_index.shape[1], 3), dtype=dtype, device=device))
        h, edges = energy_model.exchange_begin(data, local_positions.shape[0])
        _, y = energy_model.exchange_layer(0, h, data, edges)
        atomic = energy_model.exchange_energies(y, data)
        energy = atomic.sum()
        (grad,) = torch.autograd.grad([energy], [positions])
        return {"energy": energy + bad, "atomic_energies": atomic + bad, "forces": -grad + bad}


def has_local_graph(model: ForcesAndStress) -> bool:
    """Whether ``export_aoti`` adds the graph ``local``: a model without message passing (receptive
    field = cutoff) with the contract's exchange hooks in one layer (mlip's invariant model)."""
    if not has_feature_exchange(model) or receptive_field(model) > cutoff_of(model) * (1 + 1e-9):
        return False
    widths: Any = model.energy_model.exchange_widths  # a contract hook: not in nn.Module's type
    return len(widths()) == 1


def _engine_batch(positions: torch.Tensor, atomic_numbers: torch.Tensor, species: torch.Tensor, cell: torch.Tensor,
                  pbc: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
    """One frame from an engine as the models' batch: ``cell`` [3, 3] Å, ``pbc`` [3], the rest as
    the graph ``model`` takes them (no long-range terms: mlip does not compile D3 models)."""
    return {
        keys.POSITIONS: positions,
        keys.ATOMIC_NUMBERS: atomic_numbers,
        keys.SPECIES: species,
        keys.BATCH: torch.zeros_like(atomic_numbers),
        keys.CELL: cell.unsqueeze(0),
        keys.PBC: pbc.unsqueeze(0),
        keys.N_ATOMS: torch.zeros(1, dtype=torch.long, device=positions.device) + positions.shape[0],
        keys.EDGE_INDEX: edge_index,
        keys.CELL_SHIFTS: cell_shifts,
    }


def _species_table(atomic_numbers: List[int]) -> torch.Tensor:
    """[119] model species index of each atomic number, -1 for elements the model does not know."""
    table = torch.full((119,), -1, dtype=torch.long)
    for k, z in enumerate(atomic_numbers):
        table[int(z)] = k
    return table


def _species(table: torch.Tensor, atomic_numbers: torch.Tensor,
             dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """Species indices [N] of ``atomic_numbers`` and a scalar that is 0, or NaN if an element is unknown
    (added to every output: a compiled graph cannot raise)."""
    z = atomic_numbers.clamp(0, 118)
    species = table.index_select(0, z)
    known = (species >= 0) & (atomic_numbers == z)
    return species.clamp_min(0), torch.where(known.all(), 0.0, float("nan")).to(dtype)


def local_example_inputs(inputs: Tuple[torch.Tensor, ...], cutoff: float) -> Tuple[torch.Tensor, ...]:
    """The tracing input of the graph ``local`` from ``example_inputs``: its atoms as an open graph,
    the first half local, the rest ghosts, with the edges centred on the local atoms."""
    positions, numbers = inputs[0], inputs[1]
    n_local = positions.shape[0] // 2
    edge_index, _ = torch_neighbor_list(positions.double().cpu(), torch.zeros((3, 3), dtype=torch.float64),
                                        torch.zeros(3, dtype=torch.bool), cutoff)
    edge_index = edge_index[:, edge_index[0] < n_local].to(positions.device)
    return positions[:n_local], positions[n_local:], numbers[:n_local], numbers[n_local:], edge_index


def example_inputs(atomic_numbers: List[int], cutoff: float, dtype: torch.dtype,
                   device: torch.device, n_atoms: int = TRACE_ATOMS) -> Tuple[torch.Tensor, ...]:
    """A periodic cell of ``n_atoms`` random atoms (about 0.05 per Å³) holding every species, with
    its neighbour list: the tracing input (``TRACE_ATOMS``) and the export's size check
    (``CHECK_ATOMS``)."""
    gen = torch.Generator().manual_seed(0)
    n = max(n_atoms, 2 * len(atomic_numbers) + 1)
    box = max(1.2 * cutoff, (n / 0.05) ** (1.0 / 3.0))  # Å
    positions = torch.rand((n, 3), generator=gen, dtype=torch.float64) * box
    numbers = torch.tensor([atomic_numbers[k % len(atomic_numbers)] for k in range(n)], dtype=torch.long)
    cell = torch.eye(3, dtype=torch.float64) * box
    pbc = torch.tensor([True, True, True])
    edge_index, shifts = torch_neighbor_list(positions, cell, pbc, cutoff)
    return tuple(t.to(device) if not t.is_floating_point() else t.to(device=device, dtype=dtype)
                 for t in (positions, numbers, cell, pbc, edge_index, shifts))


def trace_with_forces(module: torch.nn.Module, inputs: Tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    """``make_fx`` with symbolic shapes: autograd.grad unrolled into aten ops. Duck shaping is
    switched off so that N or E never gets tied to a weight dimension of the same size."""
    from torch.fx.experimental import _config as fx_config
    from torch.fx.experimental.proxy_tensor import make_fx

    previous = fx_config.use_duck_shape
    fx_config.use_duck_shape = False
    try:
        with torch.enable_grad():
            return make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True,
                           _error_on_data_dependent_ops=True)(*[t.clone() for t in inputs])
    finally:
        fx_config.use_duck_shape = previous


def aoti_metadata(atomic_numbers: List[int], cutoff: float, dtype: torch.dtype, device: str,
                  neighbors: bool = True, receptive_field_length: Optional[float] = None,
                  local: bool = False, paired: bool = False) -> Dict[str, str]:
    """What the package carries (strings only, readable with ``get_metadata()`` in Python and C++).
    ``receptive_field_length`` (Å; default the cutoff) is stored as ``receptive_field``: the cutoff
    for a model without message passing, which an engine may run on its local and ghost atoms
    (LAMMPS on several ranks). ``local``: the package holds the graph ``local``
    (``LocalEnginePotential``); ``paired``: the graph ``paired`` (``EnginePotential(paired=True)``)."""
    meta: Dict[str, Any] = {"atomic_numbers": [int(z) for z in atomic_numbers], "cutoff": float(cutoff),
                            "receptive_field": float(receptive_field_length or cutoff),
                            "units": dict(UNITS), "dtype": str(dtype).replace("torch.", ""),
                            "mlip_version": mlip.__version__, "device": device,
                            "inputs": ["positions", "atomic_numbers", "cell", "pbc", "edge_index", "cell_shifts"],
                            "outputs": list(OUTPUTS), "neighbor_list": "caller",
                            "packaged_models": {"model": "caller's neighbour list",
                                                **({"neighbors": "builds one"} if neighbors else {}),
                                                **({"local": "an engine's local and ghost atoms"} if local else {}),
                                                **({"paired": "caller's half list, each pair once"} if paired else {})}}
    flat = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()}
    flat["mlip_metadata"] = json.dumps(meta)
    return flat


def export_aoti(model: ForcesAndStress, path: str, dtype: Optional[torch.dtype] = None, device: str = "cpu",
                inductor_configs: Optional[Dict[str, Any]] = None, check: bool = True, neighbors: bool = True) -> str:
    """Compile ``model`` (a ``ForcesAndStress`` around a registry model) into ``path`` (``*.pt2``)
    for ``device``; returns the path. ``neighbors`` adds the package's own neighbour-list graph
    (about 12 s more compiling; without it callers must always pass a list). With ``check``, the
    package is loaded and compared with the eager model on the tracing input and on a larger
    structure (``CHECK_ATOMS``; tolerance 1e-10 in float64, 1e-4 in float32, relative) before it
    replaces ``path`` (atomically; a failed write leaves the previous file and raises ``WriteError``)."""
    if d3_terms(model):
        raise ConfigError("this model has a D3 dispersion term (model.d3), which model.pt2 cannot carry yet: "
                          "export model.pt (mlip export --format torchscript), which includes it")
    device_t = torch.device(device)
    model = copy.deepcopy(model).to(device_t).eval()
    if dtype is not None:
        model = model.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    call_hooks(model, "prepare_export")  # blocks with a route Inductor cannot compile switch to one it can
    call_hooks(model, "prepare_inference")
    dtype = next(model.parameters()).dtype
    species = species_of(model)
    cutoff = cutoff_of(model)
    module = EnginePotential(model, species).to(device_t)
    inputs = example_inputs(species, cutoff, dtype, device_t)
    graph = trace_with_forces(module, inputs)
    n_atoms = torch.export.Dim("n_atoms", min=2)
    n_edges = torch.export.Dim("n_edges", min=2)
    dynamic = ({0: n_atoms}, {0: n_atoms}, None, None, {1: n_edges}, {0: n_edges})
    program = torch.export.export(graph, inputs, dynamic_shapes=dynamic, strict=False)
    programs = {"model": program}
    paired = reads_paired_edges(model)
    if paired:  # an engine's half list (LAMMPS on one rank): the model's edge functions on half the edges
        paired_module = EnginePotential(model, species, paired=True).to(device_t)
        paired_inputs = _half_list_inputs(inputs)
        programs["paired"] = torch.export.export(trace_with_forces(paired_module, paired_inputs), paired_inputs,
                                                 dynamic_shapes=dynamic, strict=False)
    local = has_local_graph(model)
    if local:  # an engine's local and ghost atoms (LAMMPS on several ranks): descriptors of the locals only
        local_module = LocalEnginePotential(model, species).to(device_t)
        local_inputs = local_example_inputs(inputs, cutoff)
        n_local, n_ghost = torch.export.Dim("n_local", min=2), torch.export.Dim("n_ghost", min=2)
        programs["local"] = torch.export.export(
            trace_with_forces(local_module, local_inputs), local_inputs, strict=False,
            dynamic_shapes=({0: n_local}, {0: n_ghost}, {0: n_local}, {0: n_ghost}, {1: n_edges}))
    if neighbors:
        programs["neighbors"] = torch.export.export(
            ExportableNeighborList(cutoff).to(device_t), inputs[:1] + inputs[2:4], strict=False,
            dynamic_shapes=({0: torch.export.Dim("n_atoms", min=1)}, None, None))
    # "cpp.threads": 1: with more than one thread Inductor (torch 2.13) fails to generate the parallel
    # CPU kernel of the equivariant model's per-structure energy sum (an atomic-add scatter:
    # "assert isinstance(index, CppCSEVariable) and index.is_vec"), so `mlip export --format aoti`
    # crashed wherever torch had several threads. One-thread kernels are what an MD engine runs (one
    # thread per MPI rank) and what every package exported with OMP_NUM_THREADS=1 already had.
    configs = {"aot_inductor.metadata": aoti_metadata(species, cutoff, dtype, device_t.type, neighbors,
                                                      receptive_field(model), local, paired),
               "cpp.threads": 1}
    configs.update(inductor_configs or {})
    path = str(path)
    if not path.endswith(".pt2"):
        raise ValueError(f"{path}: an AOTInductor package must end in .pt2")
    files = {name: _compile(prog, configs) for name, prog in programs.items()}
    from torch._inductor.package import package_aoti

    with atomic_path(path) as tmp:  # checked before the rename: a bad package never replaces a good one
        with open(tmp, "wb") as fh:  # a file object: a full disk raises OSError (see mlip.fileio)
            package_aoti(fh, files)
        if check:  # on the tracing input and on a larger structure
            larger = example_inputs(species, cutoff, dtype, device_t, n_atoms=CHECK_ATOMS)
            _check_package(str(tmp), module, [inputs, larger], dtype, neighbors)
            if local:
                _check_graph(str(tmp), "local", local_module, [local_inputs, local_example_inputs(larger, cutoff)],
                             dtype)
            if paired:  # on the half list against the eager model on the full one
                _check_graph(str(tmp), "paired", module, [inputs, larger], dtype,
                             graph_inputs=[paired_inputs, _half_list_inputs(larger)])
    return path


def _compile(program: torch.export.ExportedProgram, configs: Dict[str, Any]) -> list:
    """AOTInductor files of one exported program, for ``package_aoti``."""
    args, kwargs = program.example_inputs
    # with aot_inductor.package the result is the list of files to package
    return torch._inductor.aot_compile(program.module(check_guards=False), args, kwargs,  # type: ignore[return-value]
                                       options={**configs, "aot_inductor.package": True})


def _half_list_inputs(inputs: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, ...]:
    """``example_inputs`` with each pair of its full neighbour list once: the graph ``paired``'s input."""
    half = half_edge_list(inputs[4], inputs[5])
    assert half is not None, "example_inputs' neighbour list is a full one"
    return inputs[:4] + half


def _check_package(path: str, module: torch.nn.Module, structures: List[Tuple[torch.Tensor, ...]],
                   dtype: torch.dtype, neighbors: bool) -> None:
    """The package's graphs against eager on each of ``structures`` (``example_inputs``; tolerance
    1e-10 in float64, 1e-4 in float32, relative); raises RuntimeError naming the output that
    differs, or the graph that refused a structure."""
    from torch._inductor.package import load_package

    compiled = load_package(path, "model")
    own_list = load_package(path, "neighbors") if neighbors else None
    for inputs in structures:
        runs = [("with the caller's neighbour list", _run_graph(path, "model", compiled, inputs))]
        if own_list is not None:
            edge_index, shifts, ok = _run_graph(path, "neighbors", own_list, (inputs[0], inputs[2], inputs[3]))
            if not bool(ok) or edge_index.shape != inputs[4].shape:
                raise RuntimeError(f"AOTInductor package {path}: its neighbour list differs from torch_neighbor_list")
            own = inputs[:4] + (edge_index, shifts)
            runs.append(("with its own neighbour list", _run_graph(path, "model", compiled, own)))
        ref = {k: v.detach() for k, v in module(*inputs).items()}
        for how, got in runs:
            _compare(path, how, got, ref, dtype)


def _check_graph(path: str, name: str, module: torch.nn.Module, structures: List[Tuple[torch.Tensor, ...]],
                 dtype: torch.dtype, graph_inputs: Optional[List[Tuple[torch.Tensor, ...]]] = None) -> None:
    """The package's graph ``name`` on each of ``graph_inputs`` (default ``structures``) against
    ``module`` on the matching entry of ``structures`` (as ``_check_package``)."""
    from torch._inductor.package import load_package

    graph = load_package(path, name)
    for inputs, given in zip(structures, graph_inputs if graph_inputs is not None else structures, strict=True):
        ref = {k: v.detach() for k, v in module(*inputs).items()}
        _compare(path, f"of the graph {name!r}", _run_graph(path, name, graph, given), ref, dtype)


def _run_graph(path: str, name: str, graph: Any, inputs: Tuple[torch.Tensor, ...]) -> Any:
    """``graph(*inputs)``; a refusal (a size bound that Inductor compiled in) raised as a RuntimeError
    that names the package, the graph and the structure's size."""
    try:
        return graph(*inputs)
    except Exception as err:
        raise RuntimeError(f"AOTInductor package {path}: its graph {name!r} refused a structure of "
                           f"{inputs[0].shape[0]} atoms that the eager model computes ({err}); the package was not "
                           "written. Export model.pt instead (mlip export --format torchscript), and report this "
                           "with the model's config") from err


def _compare(path: str, how: str, got: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor],
             dtype: torch.dtype) -> None:
    """Raise RuntimeError naming the first output of ``got`` that differs from ``ref`` by more than
    1e-10 (float64) or 1e-4 (float32) relative to its largest entry."""
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for name in ref:
        scale = float(ref[name].abs().max()) + 1.0
        err = float((got[name] - ref[name]).abs().max())
        if not err <= tol * scale:
            raise RuntimeError(f"AOTInductor package {path}: {name} {how} differs from the eager model by {err:.3g}")


class AOTIPotential:
    """A loaded ``model.pt2`` with the ``compute`` interface of ``ExportedPotential`` (used by the
    ASE calculator); checks species and overlapping atoms (closer than ``min_distance`` Å) in
    Python before calling the compiled graph, and converts inputs to the package's dtype."""

    def __init__(self, path: str, device: str = "cpu"):
        device_t = torch.device(device)
        device_index = device_t.index if device_t.index is not None else -1
        self.compiled = torch._inductor.aoti_load_package(str(path), device_index=device_index)
        self.meta = json.loads(self.compiled.get_metadata()["mlip_metadata"])
        if self.meta["device"] != device_t.type:
            raise ValueError(f"{path} was compiled for {self.meta['device']}, not {device_t.type}: export it "
                             f"again with `mlip export --format aoti --device {device_t.type}`")
        self.device = device_t
        self.atomic_numbers: List[int] = self.meta["atomic_numbers"]
        self.cutoff = float(self.meta["cutoff"])
        self.dtype = getattr(torch, self.meta["dtype"])
        packaged = self.meta.get("packaged_models", {})

        def graph(name: str) -> Optional[Any]:
            """The package's graph ``name``, or None if it has none."""
            from torch._inductor.package import load_package

            return load_package(str(path), name, device_index=device_index) if name in packaged else None

        self.neighbors = graph("neighbors")
        #: the graph ``paired`` (each pair of the list once), if the package has it: ``compute`` takes it
        #: when the caller's list is a full one, as it is from ASE, vesin or LAMMPS on one rank
        self.paired: Optional[Any] = graph("paired")
        #: the graph ``local`` (a model without message passing), on the CPU: ``compute`` runs it on
        #: blocks of ``block`` atoms when a structure has more (0: never; the graph ``model`` on the
        #: whole), for the CPU's cache; on a GPU the whole graph runs
        self.local: Optional[Any] = graph("local") if device_t.type == "cpu" else None
        self.block = LOCAL_BLOCK
        self.path = str(path)
        #: Å; atoms closer than this are refused as overlapping (0 turns the check off)
        self.min_distance = MIN_DISTANCE

    def compute(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
        unknown = sorted(set(atomic_numbers.tolist()) - set(self.atomic_numbers))
        if unknown:
            raise RuntimeError(f"element with atomic number {unknown[0]} is not among the model's species "
                               f"{self.atomic_numbers}")
        kw = dict(device=self.device, dtype=self.dtype)
        positions, cell, cell_shifts = positions.to(**kw), cell.to(**kw), cell_shifts.to(**kw)
        edge_index = edge_index.to(self.device, torch.long)
        if self.min_distance > 0.0:
            vectors = positions[edge_index[1]] - positions[edge_index[0]] + cell_shifts @ cell
            i, j, d = closest_pair(vectors, edge_index)
            if d < self.min_distance:
                raise RuntimeError(overlap_message(i, j, d, self.min_distance))
        numbers, pbc = atomic_numbers.to(self.device, torch.long), pbc.to(self.device, torch.bool)
        if self.local is not None and 0 < self.block < positions.shape[0]:
            return self._compute_in_blocks(positions, numbers, cell, pbc, edge_index, cell_shifts)
        paired = self.paired
        if paired is not None:
            half = half_edge_list(edge_index, cell_shifts)
            if half is not None:  # a full list (not a caller's half or one-sided list)
                return paired(positions, numbers, cell, pbc, *half)
        return self.compiled(positions, numbers, cell, pbc, edge_index, cell_shifts)

    def _compute_in_blocks(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor,
                           pbc: torch.Tensor, edge_index: torch.Tensor,
                           cell_shifts: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``compute``'s outputs from the graph ``local`` (a model without message passing: an atom's
        energy depends on its own edges only) on blocks of ``block`` atoms, each with the receivers
        of its edges outside it (other atoms, or periodic images) as ghosts at their image
        positions. The ghosts' forces go to the atoms they are images of; the virial is
        sum x (x) f over every block's atoms and ghosts, as for any potential of the edge vectors.
        On 8,000-27,000 Si atoms, blocks of 512 took half the time per atom of the whole graph."""
        local = self.local
        assert local is not None, "_compute_in_blocks needs the graph local"
        n = positions.shape[0]
        senders, receivers, shifts = edge_index[0], edge_index[1], cell_shifts.round().long()
        if senders.numel() > 1 and not bool((senders[1:] >= senders[:-1]).all()):
            order = torch.argsort(senders, stable=True)  # edges grouped by their centre
            senders, receivers, shifts = senders[order], receivers[order], shifts[order]
        # one integer per (receiver, lattice shift): the key of a ghost (an image of an atom)
        reach = int(shifts.abs().max()) if shifts.numel() else 0
        width = 2 * reach + 1
        image_keys = ((receivers * width + shifts[:, 0] + reach) * width + shifts[:, 1] + reach) * width \
            + shifts[:, 2] + reach
        starts = list(range(0, n, self.block)) + [n]
        edge_bounds = torch.searchsorted(senders, torch.tensor(starts, device=senders.device)).tolist()
        energy = torch.zeros((), dtype=torch.float64, device=positions.device)  # float32 sums of blocks drift
        atomic = positions.new_zeros(n)
        forces = torch.zeros_like(positions)
        virial = positions.new_zeros((3, 3))
        for k in range(len(starts) - 1):
            b0, b1, e0, e1 = starts[k], starts[k + 1], edge_bounds[k], edge_bounds[k + 1]
            s, r, shift = senders[e0:e1], receivers[e0:e1], shifts[e0:e1]
            outside = (r < b0) | (r >= b1) | (shift != 0).any(dim=1)
            first_edge = outside.nonzero().squeeze(1)
            images, which = torch.unique(image_keys[e0:e1][first_edge], return_inverse=True)  # each image once
            first_edge = first_edge.new_zeros(images.shape[0]).scatter_(0, which, first_edge)  # an edge to each
            ghost_atom = r.index_select(0, first_edge)
            ghost_positions = positions.index_select(0, ghost_atom) + \
                shift.index_select(0, first_edge).to(positions.dtype) @ cell
            local_receivers = r - b0
            local_receivers[outside] = (b1 - b0) + which
            out = local(positions[b0:b1], ghost_positions, numbers[b0:b1], numbers.index_select(0, ghost_atom),
                        torch.stack([s - b0, local_receivers]))
            f = out["forces"]
            energy = energy + out["energy"].double()
            atomic[b0:b1] = out["atomic_energies"]
            forces[b0:b1] += f[:b1 - b0]
            forces.index_add_(0, ghost_atom, f[b1 - b0:])
            virial += positions[b0:b1].T @ f[:b1 - b0] + ghost_positions.T @ f[b1 - b0:]
        volume = torch.linalg.det(cell).abs()
        if not bool(pbc.all()) or float(volume) <= 0.0:
            virial = torch.zeros_like(virial)  # as the graph model: no stress without a periodic cell
            volume = torch.ones_like(volume)
        return {"energy": energy.to(positions.dtype), "atomic_energies": atomic, "forces": forces,
                "stress": -virial / volume, "virial": virial}

    def __call__(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor,
                 pbc: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Outputs for a structure, with the package's own neighbour list (no engine, no vesin)."""
        if self.neighbors is None:
            raise RuntimeError(f"{self.path} has no built-in neighbour list (exported with neighbors=False or "
                               "by an earlier mlip): pass edge_index and cell_shifts to compute(), or export it again")
        kw = dict(device=self.device, dtype=self.dtype)
        positions, cell, pbc = positions.to(**kw), cell.to(**kw), pbc.to(self.device, torch.bool)
        edge_index, shifts, ok = self.neighbors(positions, cell, pbc)
        if not bool(ok):
            raise RuntimeError(f"{self.path}: the built-in neighbour list covers cells at least cutoff/4 = "
                               f"{self.cutoff / 4:.3g} Å high in each periodic direction (and a non-singular "
                               "cell); this one is not: pass an engine neighbour list to compute()")
        return self.compute(positions, atomic_numbers, cell, pbc, edge_index, shifts)


def load_aoti(path: str, device: str = "cpu") -> Tuple[AOTIPotential, Dict[str, Any]]:
    """Load ``model.pt2`` and its metadata."""
    potential = AOTIPotential(path, device)
    return potential, potential.meta
