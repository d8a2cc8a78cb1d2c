"""Names of the entries of a batch, a plain ``Dict[str, Tensor]``.

Shapes use N = atoms in the batch, B = frames (configurations), E = directed edges.

Inputs
    POSITIONS      [N, 3]  float, Å
    ATOMIC_NUMBERS [N]     long
    SPECIES        [N]     long, index into the model's species list
    BATCH          [N]     long, frame index of each atom
    CELL           [B, 3, 3] float, Å, rows are lattice vectors (zeros for molecules)
    PBC            [B, 3]  bool
    N_ATOMS        [B]     long
    EDGE_INDEX     [2, E]  long, (i = centre, j = neighbour)
    CELL_SHIFTS    [E, 3]  float, integer lattice translations: r_ij = r_j - r_i + S @ cell
    CONFIG_TYPE    [B]     long, index into the datamodule's list of config types

Labels (and masks, True where the frame carries the label); ``mlip.targets`` registers these
kinds and any other
    ENERGY [B] eV, FORCES [N, 3] eV/Å, STRESS [B, 3, 3] eV/Å³
    ENERGY_MASK [B], FORCES_MASK [B], STRESS_MASK [B]  bool

Outputs of a model
    ATOMIC_ENERGY [N] eV, TOTAL_ENERGY [B] eV, PRED_FORCES [N, 3] eV/Å, PRED_STRESS [B, 3, 3] eV/Å³
"""

POSITIONS = "positions"
ATOMIC_NUMBERS = "atomic_numbers"
SPECIES = "species"
BATCH = "batch"
CELL = "cell"
PBC = "pbc"
N_ATOMS = "n_atoms"
EDGE_INDEX = "edge_index"
CELL_SHIFTS = "cell_shifts"
CONFIG_TYPE = "config_type"
#: present (any value) in the batch of an engine with ghost atoms (``compute_local``): long-range terms
#: the engine adds itself (D3 dispersion: LAMMPS ``dispersion/d3``) are left out of the model's energy
ENGINE_ADDS_LONG_RANGE = "engine_adds_long_range"

#: optional entries a model's ``compile_inputs`` hook adds, eagerly, before a compiled training step
#: (``mlip.training.compiled_step``): index tensors whose sizes depend on the data, which a compiled
#: graph takes as inputs (sizes it can lower) instead of deriving them itself.
#: SPECIES_ATOMS + str(s): [n_s + 1] long, the atoms of species index s, then N (a scratch atom);
#: REVERSE_PAIR_FIRST [G] and REVERSE_PAIR_GROUP [E] long (``mlip.nn.geometry.reverse_pair_groups``)
SPECIES_ATOMS = "species_atoms_"
REVERSE_PAIR_FIRST = "reverse_pair_first"
REVERSE_PAIR_GROUP = "reverse_pair_group"
#: present (any value) when the batch's E edges come in reverse halves: edge g + E/2 is edge g reversed
#: (j -> i with shift -S for i -> j with S), as an engine's half list doubled by the exporters' graph
#: ``paired`` (``mlip.nn.geometry.half_edge_list``). A model may evaluate functions of the distance
#: on the first half only (the same on both); one that ignores it computes the same numbers.
PAIRED_EDGES = "paired_edges"
#: a 0-dim int64 tensor G: the batch's first 2G edges come in reverse halves (edge g + G is edge g
#: reversed, g < G) and the others have no reverse among the edges (an engine's edges from its local
#: atoms to ghost atoms, on MPI ranks: ``exchange_begin_paired`` of ``model.pt``). A model may evaluate
#: functions of the distance once per pair; one that ignores it computes the same numbers.
PAIRED_PREFIX = "paired_prefix"

ENERGY = "energy"
FORCES = "forces"
STRESS = "stress"
ENERGY_MASK = "energy_mask"
FORCES_MASK = "forces_mask"
STRESS_MASK = "stress_mask"

ATOMIC_ENERGY = "atomic_energy"
TOTAL_ENERGY = "total_energy"
PRED_FORCES = "pred_forces"
PRED_STRESS = "pred_stress"


def __getattr__(name: str):
    """``LABEL_KINDS``, ``MASK_OF`` and ``PREDICTION_OF``: live views of ``mlip.targets``' registry
    (kinds that a loss or metric can use, the masks that say which frames carry them, and the
    model output that predicts them)."""
    from mlip import targets

    if name == "LABEL_KINDS":
        return targets.names()
    if name == "MASK_OF":
        return {t.name: t.mask_key for t in targets.all_targets()}
    if name == "PREDICTION_OF":
        return {t.name: t.prediction_key for t in targets.all_targets()}
    raise AttributeError(f"module 'mlip.keys' has no attribute {name!r}")
