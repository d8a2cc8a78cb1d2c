// pair_style mlip: see pair_mlip.h and docs/md_engines.md.
#include "pair_mlip.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace LAMMPS_NS;

namespace {

const char *const ELEMENTS[] = {
    "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si",
    "P",  "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru",
    "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr",
    "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",
    "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac",
    "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf",
    "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
const int N_ELEMENTS = sizeof(ELEMENTS) / sizeof(ELEMENTS[0]);

int atomic_number(const std::string &symbol)
{
  for (int z = 1; z < N_ELEMENTS; ++z)
    if (symbol == ELEMENTS[z]) return z;
  return -1;
}

std::string species_list(const std::vector<int64_t> &zs)
{
  std::string out;
  for (auto z : zs) {
    if (!out.empty()) out += " ";
    out += (z > 0 && z < N_ELEMENTS) ? ELEMENTS[z] : std::to_string(z);
  }
  return out;
}

// h_model = [h_local; the features of each ghost's owner], by LAMMPS' forward communication;
// backward: the gradients of the ghost rows summed onto their owners by reverse communication.
// Every rank calls it after the same layers, and backward runs on the calling thread (CPU
// autograd), so the collective calls meet in the same order on all ranks.
struct FeatureExchange : public torch::autograd::Function<FeatureExchange> {
  static torch::Tensor forward(torch::autograd::AutogradContext *ctx, const torch::Tensor &h_local, int64_t pair)
  {
    ctx->saved_data["pair"] = pair;
    return reinterpret_cast<LAMMPS_NS::PairMLIP *>(pair)->forward_exchange(h_local);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads)
  {
    auto *pair = reinterpret_cast<LAMMPS_NS::PairMLIP *>(ctx->saved_data["pair"].toInt());
    return {pair->reverse_exchange(grads[0]), torch::Tensor()};
  }
};

// glibc malloc keeps freed memory in the process, as mlip/cli/malloc_tuning.py does for training:
// by default every step's intermediates above the mmap threshold come from fresh pages and are
// unmapped again, so each MD step page-faults the same memory back in. Same settings as there:
// mmap threshold 32 MiB and no mmap at all (per-edge tensors of a few thousand atoms are 50-100 MB),
// no trimming (trim threshold -1: a 2 GiB threshold let steps of 100,000 atoms give several GB back
// and fault them in again), top pad 64 MiB; MLIP_MALLOC_TUNING=0 turns it off.
void keep_freed_memory()
{
#if defined(__GLIBC__)
  static bool done = false;
  if (done) return;
  done = true;
  const char *env = std::getenv("MLIP_MALLOC_TUNING");
  if (env && std::string(env) == "0") return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);    // -1: never trim (mallopt(3))
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

}    // namespace

PairMLIP::PairMLIP(LAMMPS *lmp) :
    Pair(lmp), model_loaded(false), model_cutoff(0.0), receptive_field(0.0), ghost_centres(false), can_fold(false),
    model_paired(false), exchange_paired(false), ghost_mode("fold"), block_size(DEFAULT_BLOCK), blocked(false),
    can_exchange(false), package_local(false), fold_ghosts(false), exchange_features(false), comm_width(0), reverse_calls(0),
    model_dtype(torch::kFloat64), local_pairs(-1)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  // the virial comes from this style's own forces (or the model), not from LAMMPS' sum of x f over
  // the force array, which under hybrid/overlay also holds the other styles' forces
  no_virial_fdotr_compute = 1;
  keep_freed_memory();
}

PairMLIP::~PairMLIP()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairMLIP::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) setflag[i][j] = 0;
  type_to_z.assign(n, -1);
}

void PairMLIP::settings(int narg, char **arg)
{
  // optional, for comparisons and debugging: 'ghosts exchange' exchanges node features between
  // layers even where ghosts could be folded (one rank, periodic box); 'ghosts shell' recomputes
  // every layer on a ghost shell as deep as the receptive field. 'block N': local atoms per call of
  // a model without message passing (0: all in one call)
  ghost_mode = "fold";
  block_size = DEFAULT_BLOCK;
  const char *usage = "pair_style mlip takes only the optional 'ghosts fold' (default), 'ghosts exchange' or "
                      "'ghosts shell', and 'block N' (local atoms per call of a model without message passing; "
                      "default 512, 0 for all at once); the model file goes in pair_coeff";
  for (int k = 0; k < narg; k += 2) {
    const std::string key = arg[k];
    if (k + 1 >= narg) error->all(FLERR, usage);
    const std::string value = arg[k + 1];
    if (key == "ghosts" && (value == "fold" || value == "exchange" || value == "shell")) {
      ghost_mode = value;
    } else if (key == "block") {
      block_size = utils::inumeric(FLERR, value, false, lmp);
      if (block_size < 0) error->all(FLERR, "pair_style mlip block {}: must be 0 (no blocks) or a positive atom count",
                                     value);
    } else {
      error->all(FLERR, usage);
    }
  }
}

void PairMLIP::load_model(const std::string &path)
{
  package.reset();
  local_graph.reset();
  paired_graph.reset();
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".pt2") == 0) {
    load_package(path);
    return;
  }
  try {
    model = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error &e) {
    error->one(FLERR, "pair_style mlip: cannot load TorchScript model {}: {}", path, e.what_without_backtrace());
  }
  model.eval();
  if (!model.find_method("compute_local"))
    error->all(FLERR,
               "pair_style mlip: {} has no compute_local method; export it again with this version of mlip "
               "(mlip export <run>)", path);
  model_cutoff = model.attr("cutoff").toDouble();
  model_species.clear();
  for (const auto &z : model.attr("atomic_numbers").toList()) model_species.push_back(z.get().toInt());
  receptive_field = model_cutoff;
  if (model.find_method("receptive_field")) receptive_field = model.get_method("receptive_field")({}).toDouble();
  ghost_centres = receptive_field > model_cutoff * (1.0 + 1e-9);
  can_fold = model.find_method("compute_engine").has_value();
  model_paired = model.find_method("compute_engine_paired").has_value() && model.hasattr("paired_route") &&
      model.attr("paired_route").toBool();
  can_exchange = model.find_method("exchange_widths").has_value();
  exchange_paired = model_paired && can_exchange && model.find_method("exchange_begin_paired").has_value();
  exchange_widths.clear();
  if (can_exchange)
    for (const auto &w : model.get_method("exchange_widths")({}).toList()) exchange_widths.push_back(w.get().toInt());
  // the largest exchange (all layers but the last): LAMMPS sizes its buffers from these in init
  comm_forward = comm_reverse = 0;
  for (size_t t = 0; t + 1 < exchange_widths.size(); ++t)
    comm_forward = comm_reverse = std::max(comm_forward, (int) exchange_widths[t]);
  model_dtype = torch::kFloat64;
  for (const auto &p : model.parameters()) {
    model_dtype = p.scalar_type();
    break;
  }
  model_path = path;
  model_loaded = true;
}

// model.pt2 (mlip export --format aoti): the compiled graph "model" takes the engine's list as
// compute does (positions, atomic_numbers, cell, pbc, edge_index, cell_shifts -> energy,
// atomic_energies, forces, stress, virial). It has no layer-by-layer methods: a message-passing
// model runs only where ghosts fold onto their owners (init_style refuses the rest); a model
// without message passing (metadata receptive_field = cutoff) also runs where ghosts do not fold:
// its graph "local" (mlip's invariant model: descriptors of the local atoms only), else "model" on
// the local and ghost atoms as one open graph, edges centred on local atoms only. mlip refuses to
// compile D3 models, so there is no long-range term to leave out.
void PairMLIP::load_package(const std::string &path)
{
  std::unordered_map<std::string, std::string> meta;
  try {
    package = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model");
    meta = package->get_metadata();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style mlip: cannot load AOTInductor package {}: {}", path, e.what());
  }
  for (const char *key : {"cutoff", "atomic_numbers", "dtype", "device"})
    if (meta.find(key) == meta.end())
      error->all(FLERR, "pair_style mlip: {} has no '{}' in its metadata; is it an mlip model.pt2? Export it "
                 "again with 'mlip export <run> --format aoti'", path, key);
  if (meta["device"] != "cpu")
    error->all(FLERR, "pair_style mlip: {} was compiled for {}; this plugin runs on the CPU: export it with "
               "'mlip export <run> --format aoti --device cpu'", path, meta["device"]);
  model_cutoff = std::stod(meta["cutoff"]);
  model_species.clear();
  std::string zs = meta["atomic_numbers"];    // JSON list, e.g. [1, 8, 14]
  for (char &ch : zs)
    if (ch == '[' || ch == ']' || ch == ',') ch = ' ';
  for (const auto &z : utils::split_words(zs)) model_species.push_back(std::stoll(z));
  model_dtype = meta["dtype"] == "float32" ? torch::kFloat32 : torch::kFloat64;
  // packages written before mlip stored receptive_field: taken as message passing (one rank only)
  package_local = meta.count("receptive_field") > 0 && std::stod(meta["receptive_field"]) <= model_cutoff * (1.0 + 1e-9);
  local_graph.reset();
  if (package_local && meta["mlip_metadata"].find("\"local\":") != std::string::npos) {
    try {
      local_graph = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "local");
    } catch (const std::exception &e) {
      error->one(FLERR, "pair_style mlip: cannot load the graph 'local' of {}: {}", path, e.what());
    }
  }
  // the graph "paired" (a model that evaluates its radial network once per pair): each pair of the
  // folded list once, the graph appends the reverses
  if (meta["mlip_metadata"].find("\"paired\":") != std::string::npos) {
    try {
      paired_graph = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "paired");
    } catch (const std::exception &e) {
      error->one(FLERR, "pair_style mlip: cannot load the graph 'paired' of {}: {}", path, e.what());
    }
  }
  receptive_field = model_cutoff;    // ghosts fold, or the model is local: they need to reach one cutoff only
  ghost_centres = false;
  can_fold = true;
  can_exchange = false;
  exchange_widths.clear();
  comm_forward = comm_reverse = 0;
  model_path = path;
  model_loaded = true;
}

// pair_coeff * * model.pt Si O ...   (one element symbol per LAMMPS atom type)
void PairMLIP::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff for pair_style mlip: expected '* * model.pt' and {} element symbol(s) "
               "(one per atom type), got {} arguments", ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for pair_style mlip must be 'pair_coeff * * model.pt <elements>'");
  load_model(arg[2]);
  for (int t = 1; t <= ntypes; ++t) {
    std::string symbol = arg[2 + t];
    int z = atomic_number(symbol);
    if (z < 0) error->all(FLERR, "pair_coeff for pair_style mlip: {} (type {}) is not an element symbol", symbol, t);
    bool known = false;
    for (auto s : model_species) known = known || (s == z);
    if (!known)
      error->all(FLERR, "pair_coeff for pair_style mlip: element {} (type {}) is not among the species of {} ({})",
                 symbol, t, arg[2], species_list(model_species));
    type_to_z[t] = z;
  }
  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style mlip: {} (species {}, cutoff {} A, receptive field {} A, {})\n", model_path,
                   species_list(model_species), model_cutoff, receptive_field,
                   model_dtype == torch::kFloat32 ? "float32" : "float64");
}

void PairMLIP::init_style()
{
  if (!model_loaded) error->all(FLERR, "pair_style mlip: no model; use 'pair_coeff * * model.pt <elements>'");
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style mlip requires 'newton on' (the default): forces on ghost atoms are summed "
               "back to their owners by LAMMPS");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style mlip requires atom IDs");
  // On one rank in a periodic box every ghost is an image of a local atom: fold each edge onto the
  // owner with a cell shift and evaluate the periodic graph of the local atoms (compute_engine), so
  // ghosts need only reach one cutoff, whatever the model's receptive field. Owners
  // are found by atom ID (a table rebuilt each step: no 'atom_modify map' needed).
  // Elsewhere (MPI ranks, a non-periodic direction) a model with the exchange_* methods (mlip's
  // own) runs layer by layer on the local atoms, its node features exchanged with the ghosts after
  // each layer (ghosts one cutoff deep: the ML-IAP scheme); else ('ghosts shell', or a model
  // without them) ghosts reach the receptive field and every layer is recomputed on them
  // (compute_local, with edges centred on ghosts).
  // A model without message passing runs on blocks of block_size local atoms, each with its
  // neighbours as ghosts, on one rank or many (no folding): model.pt2's graph "local", or model.pt's
  // one layer through the exchange methods (nothing to exchange). Every block's edge tensors stay
  // in cache and memory does not grow with the system (1,000-97,336 Si atoms, invariant model.pt2:
  // 20 us/atom-step at every size and 0.6 kB/atom, against 23-24 us and 22 kB/atom folded).
  const bool one_layer = !package && can_exchange && !ghost_centres && exchange_widths.size() == 1;
  blocked = block_size > 0 && (local_graph || (one_layer && ghost_mode != "shell"));
  fold_ghosts = ghost_mode == "fold" && can_fold && !blocked && comm->nprocs == 1 && domain->xperiodic &&
      domain->yperiodic && domain->zperiodic;
  if (package && !fold_ghosts && !package_local)
    error->all(FLERR, "pair_style mlip: {} (AOTInductor) of a message-passing model runs only on one MPI rank in a "
               "box periodic in x, y and z, with ghosts folded (not 'ghosts exchange' or 'ghosts shell'); here {}. "
               "Use the TorchScript file instead: 'mlip export <run>' writes model.pt", model_path,
               ghost_mode != "fold" ? "'ghosts " + ghost_mode + "' was asked for"
                                    : comm->nprocs > 1 ? "there are several ranks" : "a direction is not periodic");
  // (a one-layer model with these methods exchanges nothing, but computes its local atoms only)
  exchange_features = !fold_ghosts && can_exchange && ghost_mode != "shell";
  if (ghost_mode == "exchange" && ghost_centres && !can_exchange)
    error->all(FLERR, "pair_style mlip ghosts exchange: {} has no exchange_* methods (layer-by-layer evaluation); "
               "export it again with this version of mlip, or use 'ghosts shell'", model_path);
  const bool deep_ghosts = ghost_centres && !fold_ghosts && !exchange_features;
  ghostneigh = deep_ghosts ? 1 : 0;
  int flags = NeighConst::REQ_FULL;
  if (deep_ghosts) flags |= NeighConst::REQ_GHOST;
  neighbor->add_request(this, flags);
  if (comm->me == 0 && blocked)
    utils::logmesg(lmp, "pair_style mlip: the model on blocks of {} local atoms (their neighbours as ghosts)\n",
                   block_size);
  if (comm->me == 0 && ghost_centres)
    utils::logmesg(lmp, "pair_style mlip: {}\n",
                   fold_ghosts ? "one rank, periodic box: ghost atoms folded onto their owners (ghosts reach one "
                                 "cutoff)"
                   : exchange_features ? "node features exchanged with the ghost atoms after each layer (ghosts "
                                         "reach one cutoff)"
                                       : "ghost atoms reach the receptive field");
  // a message-passing model sees atoms up to receptive_field away: ghosts must reach that far
  double needed = receptive_field + neighbor->skin;
  if (deep_ghosts && comm->cutghostuser < needed) {
    comm->cutghostuser = needed;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style mlip: ghost cutoff set to {} A (receptive field {} + skin {}); "
                     "equivalent to 'comm_modify cutoff {}'\n", needed, receptive_field, neighbor->skin, needed);
  }
}

double PairMLIP::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "pair_style mlip: all pair coeffs are not set");
  cutghost[i][j] = cutghost[j][i] = model_cutoff;
  return model_cutoff;
}

void PairMLIP::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom || cvflag_atom)
    error->all(FLERR, "pair_style mlip does not compute per-atom virials (compute stress/atom)");
  if (atom->nlocal == 0) {
    // no atoms in this rank's domain (a molecule or slab on many ranks): nothing to compute, but
    // the exchanges are collective: make them (ghosts relay features between other ranks)
    if (exchange_features) {
      for (int t = 0; t + 1 < (int) exchange_widths.size(); ++t) idle_exchange(t, true);
      for (int t = (int) exchange_widths.size() - 2; t >= 0; --t) idle_exchange(t, false);
    }
    return;
  }
  if (fold_ghosts) {
    compute_folded(eflag, vflag);
    return;
  }

  // ghosts fold: none are centres; exchange: only local atoms are centres (ghost features come from
  // their owners); shell: for L = receptive_field / cutoff layers, ghosts up to L - 1 edges away
  // from a local atom are centres with their own edges
  const int hops = ghost_centres && !exchange_features
      ? std::max(0, (int) std::ceil(receptive_field / model_cutoff - 1e-9) - 1) : 0;
  const int nlocal = atom->nlocal;
  const int block = blocked ? block_size : nlocal;
  const int nblocks = (nlocal + block - 1) / block;
  // each block's centres (its atoms in the neighbour list), in list order, by one counting sort:
  // block k's are centre_order[centre_start[k] .. centre_start[k + 1])
  centre_start.assign(nblocks + 1, 0);
  for (int ii = 0; ii < list->inum; ++ii) ++centre_start[list->ilist[ii] / block + 1];
  for (int k = 0; k < nblocks; ++k) centre_start[k + 1] += centre_start[k];
  centre_order.resize(list->inum);
  centre_fill.assign(centre_start.begin(), centre_start.end() - 1);
  for (int ii = 0; ii < list->inum; ++ii) centre_order[centre_fill[list->ilist[ii] / block]++] = list->ilist[ii];
  for (int k = 0; k < nblocks; ++k) {
    const int b0 = k * block, b1 = std::min(nlocal, b0 + block);
    torch::Tensor positions64, numbers, edge_index;
    const int64_t n_model = ghost_graph(hops, b0, b1, centre_order.data() + centre_start[k],
                                        centre_order.data() + centre_start[k + 1], positions64, numbers, edge_index,
                                        exchange_features && exchange_paired);
    torch::Tensor positions = positions64.to(model_dtype);
    torch::Tensor forces, energy, atomic, unused_virial;
    const int64_t n_own = b1 - b0;    // the model's first atoms: local atoms b0..b1-1
    if (exchange_features) {
      run_exchange(positions, numbers, edge_index, n_own, local_pairs, forces, energy, atomic);
    } else if (local_graph) {
      // the package's graph "local": the block's energies and the forces on all its model atoms
      run_package({positions.narrow(0, 0, n_own), positions.narrow(0, n_own, n_model - n_own),
                   numbers.narrow(0, 0, n_own), numbers.narrow(0, n_own, n_model - n_own), edge_index},
                  forces, energy, atomic, unused_virial, local_graph.get());
    } else if (package) {
      // a local model's graph "model" on the local and ghost atoms as an open graph (no cell, no
      // shifts): ghosts are centres of no edge, so their own energies are constants and the forces
      // are those of the local atoms' energies; the energy is the local atoms' sum
      auto fopts = torch::TensorOptions().dtype(model_dtype);
      run_package({positions, numbers, torch::zeros({3, 3}, fopts), torch::zeros({3}, torch::TensorOptions().dtype(torch::kBool)),
                   edge_index, torch::zeros({edge_index.size(1), 3}, fopts)}, forces, energy, atomic, unused_virial);
      atomic = atomic.narrow(0, 0, n_own).contiguous();
      energy = atomic.sum();
    } else {
      // the profiling executor's optimised graphs run this model 1.5-4x slower on CPU than the
      // plain interpreter (measured with torch 2.13); scoped in run_model, so the host is unaffected
      run_model("compute_local", {positions, numbers, edge_index, (int64_t) n_own}, forces, energy, atomic,
                unused_virial);
    }
    const double *fp = forces.data_ptr<double>();
    const double *xp = positions64.data_ptr<double>();
    tally(fp, energy, atomic, n_model, n_own);
    // sum over the model's local and ghost atoms of x (x) f (its own forces): the virial of a
    // potential that depends on positions only through the edge vectors
    if (vflag_global) {
      double v[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
      for (int64_t k = 0; k < n_model; ++k) {
        const double *xk = xp + 3 * k, *fk = fp + 3 * k;
        v[0] += xk[0] * fk[0];
        v[1] += xk[1] * fk[1];
        v[2] += xk[2] * fk[2];
        v[3] += xk[0] * fk[1];    // as LAMMPS' virial_fdotr_compute: xy, xz, yz
        v[4] += xk[0] * fk[2];
        v[5] += xk[1] * fk[2];
      }
      for (int m = 0; m < 6; ++m) virial[m] += v[m];
    }
  }
}

// The model's atoms: the local atoms b0..b1-1 (model indices 0..b1-b0-1; all of them, in LAMMPS'
// order, when b0 = 0 and b1 = nlocal), then the atoms it needs: neighbours of the centres (those
// local atoms' entries of the neighbour list, centres_begin..centres_end: other local atoms of a
// block, or ghosts) and, with hops > 0, ghosts up to hops edges away as
// centres with their own edges. Edges i -> j with |x_j - x_i| < cutoff (ghost positions are image
// positions: no shifts). Fills model_index / lammps_index; returns the atom count.
int64_t PairMLIP::ghost_graph(int hops, int b0, int b1, const int *centres_begin, const int *centres_end,
                              torch::Tensor &positions64, torch::Tensor &numbers, torch::Tensor &edge_index,
                              bool pair_local)
{
  double **x = atom->x;
  int *type = atom->type;
  const int nall = atom->nlocal + atom->nghost;
  const double cutsq_model = model_cutoff * model_cutoff;
  // the first block of a step clears the whole table; later ones only the previous block's entries
  if (b0 == 0 || (int) model_index.size() < nall) {
    if ((int) model_index.size() < nall) model_index.resize(nall);
    std::fill(model_index.begin(), model_index.begin() + nall, -1);
  } else {
    for (int i : lammps_index) model_index[i] = -1;
  }
  lammps_index.clear();
  for (int i = b0; i < b1; ++i) {
    model_index[i] = i - b0;
    lammps_index.push_back(i);
  }
  std::vector<int> centres(centres_begin, centres_end);
  senders.clear();
  receivers.clear();
  size_t begin = 0;
  for (int hop = 0; hop <= hops; ++hop) {
    const size_t end = centres.size();
    for (size_t c = begin; c < end; ++c) {
      const int i = centres[c];
      const int *jlist = list->firstneigh[i];
      const int jnum = list->numneigh[i];
      for (int jj = 0; jj < jnum; ++jj) {
        const int j = jlist[jj] & NEIGHMASK;
        const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
        if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
        if (model_index[j] < 0) {
          model_index[j] = (int) lammps_index.size();
          lammps_index.push_back(j);
          if (hop < hops) centres.push_back(j);
        }
        senders.push_back(model_index[i]);
        receivers.push_back(model_index[j]);
      }
    }
    begin = end;
  }
  local_pairs = pair_local ? pair_local_edges(b1 - b0) : -1;
  const int64_t n_model = (int64_t) lammps_index.size();
  const int64_t n_edges = (int64_t) senders.size();
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  edge_index = torch::empty({2, n_edges}, long_opts);
  if (n_edges > 0) {
    std::memcpy(edge_index[0].data_ptr<int64_t>(), senders.data(), n_edges * sizeof(int64_t));
    std::memcpy(edge_index[1].data_ptr<int64_t>(), receivers.data(), n_edges * sizeof(int64_t));
  }
  numbers = torch::empty({n_model}, long_opts);
  positions64 = torch::empty({n_model, 3}, torch::TensorOptions().dtype(torch::kFloat64));
  int64_t *zp = numbers.data_ptr<int64_t>();
  double *xp = positions64.data_ptr<double>();
  for (int64_t k = 0; k < n_model; ++k) {
    const int i = lammps_index[k];
    zp[k] = type_to_z[type[i]];
    xp[3 * k] = x[i][0];
    xp[3 * k + 1] = x[i][1];
    xp[3 * k + 2] = x[i][2];
  }
  return n_model;
}

// The edges between local atoms (model indices below n_own) in reverse halves, i -> j with i < j
// then j -> i in the same order, then the edges to ghosts (which have no reverse among the edges):
// model.pt's exchange_begin_paired evaluates its radial network once per pair of local atoms
// (about 70 % of the edges on two ranks). Returns the number of pairs; -1, with the order unchanged,
// when the edges between local atoms are not reverse pairs (counts and checksums of both directions
// differ), as in a list that is not a full one.
int64_t PairMLIP::pair_local_edges(int64_t n_own)
{
  const size_t n = senders.size();
  int64_t up = 0, down = 0;
  uint64_t sum_up = 0, sum_down = 0, sq_up = 0, sq_down = 0;  // checksums of the pairs, wrapping
  for (size_t e = 0; e < n; ++e) {
    const int64_t i = senders[e], j = receivers[e];
    if (j >= n_own) continue;
    if (i < j) {
      const uint64_t key = (uint64_t) i * (uint64_t) n_own + (uint64_t) j;
      ++up, sum_up += key, sq_up += key * key;
    } else {
      const uint64_t key = (uint64_t) j * (uint64_t) n_own + (uint64_t) i;
      ++down, sum_down += key, sq_down += key * key;
    }
  }
  if (up != down || sum_up != sum_down || sq_up != sq_down) return -1;
  paired_senders.resize(n);
  paired_receivers.resize(n);
  int64_t k = 0, u = 2 * up;
  for (size_t e = 0; e < n; ++e) {
    const int64_t i = senders[e], j = receivers[e];
    if (j >= n_own) {
      paired_senders[u] = i;
      paired_receivers[u++] = j;
    } else if (i < j) {
      paired_senders[k] = i;
      paired_receivers[k] = j;
      paired_senders[k + up] = j;
      paired_receivers[k + up] = i;
      ++k;
    }
  }
  senders.swap(paired_senders);
  receivers.swap(paired_receivers);
  return up;
}

// The model layer by layer (its exchange_* methods, mlip.export.torchscript.ExportedExchangePotential)
// on the local atoms as centres, the new features of the ghosts exchanged from their owners after
// each layer but the last; forces -dE/dx on the model's local and ghost atoms by one backward pass
// through the layers and the exchanges.
void PairMLIP::run_exchange(const torch::Tensor &positions, const torch::Tensor &numbers,
                            const torch::Tensor &edge_index, int64_t nlocal, int64_t n_pairs, torch::Tensor &forces,
                            torch::Tensor &energy, torch::Tensor &atomic)
{
  try {
    torch::jit::GraphOptimizerEnabledGuard no_jit_optimisation(false);
    torch::AutoGradMode grad_mode(true);
    torch::Tensor pos = positions.detach().requires_grad_(true);
    // n_pairs >= 0: the first 2 n_pairs edges are pairs of local atoms in reverse halves (pair_local_edges)
    auto begin = (n_pairs >= 0 ? model.get_method("exchange_begin_paired")({pos, numbers, edge_index, nlocal, n_pairs})
                               : model.get_method("exchange_begin")({pos, numbers, edge_index, nlocal})).toTuple();
    torch::jit::IValue data = begin->elements()[0], edges = begin->elements()[2];
    torch::Tensor h = begin->elements()[1].toTensor();
    torch::Tensor y;
    const int64_t layers = (int64_t) exchange_widths.size();
    for (int64_t t = 0; t < layers; ++t) {
      auto out = model.get_method("exchange_layer")({t, h, data, edges}).toTuple();
      torch::Tensor h_local = out->elements()[0].toTensor();
      torch::Tensor y_t = out->elements()[1].toTensor();
      y = t == 0 ? y_t : y + y_t;
      if (t + 1 < layers) h = FeatureExchange::apply(h_local, reinterpret_cast<int64_t>(this));
    }
    torch::Tensor local = model.get_method("exchange_energies")({y, data}).toTensor();
    torch::Tensor total = local.sum();
    reverse_calls = 0;
    torch::Tensor grad = torch::autograd::grad({total}, {pos}, {}, false, false, true)[0];
    // should no path lead from an exchange back to the positions, autograd skips its backward (a
    // rank whose atoms have no edges still has one, through the empty edge tensors): make the
    // reverse exchanges the other ranks wait for
    for (int t = (int) layers - 2 - reverse_calls; t >= 0; --t) idle_exchange(t, false);
    forces = grad.defined() ? (-grad).detach().to(torch::kFloat64).contiguous()
                            : torch::zeros({pos.size(0), 3}, torch::TensorOptions().dtype(torch::kFloat64));
    energy = total.detach();
    atomic = local.detach().to(torch::kFloat64).contiguous();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style mlip: model evaluation failed: {}", e.what());
  }
}

// the exchange buffer zeroed, one row of width floats per LAMMPS atom (local and ghost)
void PairMLIP::clear_comm_buf(int width)
{
  comm_width = width;
  comm_buf.assign((size_t) (atom->nlocal + atom->nghost) * comm_width, 0.0);
}

torch::Tensor PairMLIP::forward_exchange(const torch::Tensor &h_local)
{
  const int nlocal = atom->nlocal;
  torch::Tensor rows = h_local.detach().to(torch::kFloat64).contiguous().view({nlocal, -1});
  if (rows.size(1) > comm_forward)
    error->one(FLERR, "pair_style mlip: the model exchanges {} floats per atom, more than its exchange_widths() "
               "announced ({})", (long) rows.size(1), comm_forward);
  clear_comm_buf((int) rows.size(1));
  std::memcpy(comm_buf.data(), rows.data_ptr<double>(), (size_t) nlocal * comm_width * sizeof(double));
  comm->forward_comm(this, comm_width);
  const int64_t n_model = (int64_t) lammps_index.size();
  std::vector<int64_t> shape = h_local.sizes().vec();
  shape[0] = n_model;
  torch::Tensor out = torch::empty({n_model, comm_width}, torch::TensorOptions().dtype(torch::kFloat64));
  double *op = out.data_ptr<double>();
  for (int64_t k = 0; k < n_model; ++k)
    std::memcpy(op + k * comm_width, comm_buf.data() + (size_t) lammps_index[k] * comm_width,
                comm_width * sizeof(double));
  return out.view(shape).to(h_local.scalar_type());
}

// an exchange of layer t's width with nothing of this rank's own in it (zeros), to keep in step
// with the other ranks' collective calls; ghost rows still relay what passes through
void PairMLIP::idle_exchange(int t, bool forward)
{
  clear_comm_buf((int) exchange_widths[t]);
  if (forward)
    comm->forward_comm(this, comm_width);
  else
    comm->reverse_comm(this, comm_width);
}

torch::Tensor PairMLIP::reverse_exchange(const torch::Tensor &grad_model)
{
  ++reverse_calls;
  const int nlocal = atom->nlocal;
  const int64_t n_model = (int64_t) lammps_index.size();
  torch::Tensor rows = grad_model.detach().to(torch::kFloat64).contiguous().view({n_model, -1});
  clear_comm_buf((int) rows.size(1));
  const double *gp = rows.data_ptr<double>();
  for (int64_t k = 0; k < n_model; ++k) {
    double *row = comm_buf.data() + (size_t) lammps_index[k] * comm_width;
    for (int c = 0; c < comm_width; ++c) row[c] += gp[k * comm_width + c];
  }
  comm->reverse_comm(this, comm_width);
  std::vector<int64_t> shape = grad_model.sizes().vec();
  shape[0] = nlocal;
  torch::Tensor out = torch::empty({nlocal, comm_width}, torch::TensorOptions().dtype(torch::kFloat64));
  std::memcpy(out.data_ptr<double>(), comm_buf.data(), (size_t) nlocal * comm_width * sizeof(double));
  return out.view(shape).to(grad_model.scalar_type());
}

int PairMLIP::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  for (int i = 0; i < n; ++i)
    std::memcpy(buf + (size_t) i * comm_width, comm_buf.data() + (size_t) list[i] * comm_width,
                comm_width * sizeof(double));
  return n * comm_width;
}

void PairMLIP::unpack_forward_comm(int n, int first, double *buf)
{
  std::memcpy(comm_buf.data() + (size_t) first * comm_width, buf, (size_t) n * comm_width * sizeof(double));
}

int PairMLIP::pack_reverse_comm(int n, int first, double *buf)
{
  std::memcpy(buf, comm_buf.data() + (size_t) first * comm_width, (size_t) n * comm_width * sizeof(double));
  return n * comm_width;
}

void PairMLIP::unpack_reverse_comm(int n, int *list, double *buf)
{
  for (int i = 0; i < n; ++i) {
    double *row = comm_buf.data() + (size_t) list[i] * comm_width;
    for (int c = 0; c < comm_width; ++c) row[c] += buf[(size_t) i * comm_width + c];
  }
}

void PairMLIP::run_model(const char *method, std::vector<torch::jit::IValue> inputs, torch::Tensor &forces,
                         torch::Tensor &energy, torch::Tensor &atomic, torch::Tensor &virial_out)
{
  try {
    torch::jit::GraphOptimizerEnabledGuard no_jit_optimisation(false);
    auto out = model.get_method(method)(std::move(inputs)).toGenericDict();
    forces = out.at("forces").toTensor().to(torch::kFloat64).contiguous();
    energy = out.at("energy").toTensor();
    atomic = out.at("atomic_energies").toTensor().to(torch::kFloat64).contiguous();
    if (out.contains("virial")) virial_out = out.at("virial").toTensor().to(torch::kFloat64).contiguous();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style mlip: model evaluation failed: {}", e.what());
  }
}

// model.pt2's graph "model": the same inputs as compute_engine, its outputs as a list in the
// documented order (energy, atomic_energies, forces, stress, virial); or its graph "local"
// (energy, atomic_energies, forces; virial_out is left as it is)
void PairMLIP::run_package(std::vector<torch::Tensor> inputs, torch::Tensor &forces, torch::Tensor &energy,
                           torch::Tensor &atomic, torch::Tensor &virial_out,
                           torch::inductor::AOTIModelPackageLoader *graph)
{
  try {
    auto out = (graph ? graph : package.get())->run(inputs);
    energy = out[0];
    atomic = out[1].to(torch::kFloat64).contiguous();
    forces = out[2].to(torch::kFloat64).contiguous();
    if (out.size() > 4) virial_out = out[4].to(torch::kFloat64).contiguous();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style mlip: model evaluation failed: {}", e.what());
  }
  // a compiled graph cannot raise: its refusals (overlapping atoms, an unknown element) are NaN
  if (!std::isfinite(energy.item<double>()))
    error->one(FLERR, "pair_style mlip: {} returned a non-finite energy at step {}: atoms on top of each other "
               "(closer than 0.1 A) or far outside the training data; model.pt names the atoms", model_path,
               (long) update->ntimestep);
}

void PairMLIP::tally(const double *fp, const torch::Tensor &energy, const torch::Tensor &atomic, int64_t n_model,
                     int64_t n_own)
{
  // forces of model atom k go to LAMMPS atom lammps_index[k] (ghosts: summed to owners by LAMMPS);
  // energies of the model's first n_own atoms (local atoms) to those atoms
  double **f = atom->f;
  for (int64_t k = 0; k < n_model; ++k) {
    const int i = lammps_index[k];
    f[i][0] += fp[3 * k];
    f[i][1] += fp[3 * k + 1];
    f[i][2] += fp[3 * k + 2];
  }
  if (eflag_global) eng_vdwl += energy.item<double>();
  if (eflag_atom) {
    const double *ep = atomic.data_ptr<double>();
    for (int64_t k = 0; k < n_own; ++k) eatom[lammps_index[k]] += ep[k];
  }
}

void PairMLIP::compute_folded(int /*eflag*/, int /*vflag*/)
{
  double **x = atom->x;
  int *type = atom->type;
  tagint *tag = atom->tag;
  const int nlocal = atom->nlocal;
  const double cutsq_model = model_cutoff * model_cutoff;
  // the box as ASE cell rows a = (xprd, 0, 0), b = (xy, yprd, 0), c = (xz, yz, zprd)
  const double *h = domain->h;    // xprd yprd zprd yz xz xy
  tagint max_tag = 0;
  for (int i = 0; i < nlocal; ++i) max_tag = std::max(max_tag, tag[i]);
  owner_of_tag.assign((size_t) max_tag + 1, -1);
  lammps_index.resize(nlocal);
  for (int i = 0; i < nlocal; ++i) {
    owner_of_tag[tag[i]] = i;
    lammps_index[i] = i;
  }
  senders.clear();
  receivers.clear();
  shifts.clear();
  for (int ii = 0; ii < list->inum; ++ii) {
    const int i = list->ilist[ii];
    const int *jlist = list->firstneigh[i];
    const int jnum = list->numneigh[i];
    for (int jj = 0; jj < jnum; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
      int owner = j;
      double sa = 0.0, sb = 0.0, sc = 0.0;
      if (j >= nlocal) {
        owner = (tag[j] >= 0 && tag[j] <= max_tag) ? owner_of_tag[tag[j]] : -1;
        if (owner < 0)
          error->one(FLERR, "pair_style mlip: ghost atom {} has no local owner", (long) tag[j]);
        // x_j = x_owner + sa a + sb b + sc c, solved for the (integer) lattice shift
        const double ex = x[j][0] - x[owner][0], ey = x[j][1] - x[owner][1], ez = x[j][2] - x[owner][2];
        sc = std::round(ez / h[2]);
        sb = std::round((ey - h[3] * sc) / h[1]);
        sa = std::round((ex - h[5] * sb - h[4] * sc) / h[0]);
      }
      senders.push_back(i);
      receivers.push_back(owner);
      shifts.push_back(sa);
      shifts.push_back(sb);
      shifts.push_back(sc);
    }
  }
  int64_t n_edges = (int64_t) senders.size();
  // the graph "paired" takes each pair once: i -> j with shift S where i < j, or i == j with S
  // lexicographically positive (mlip.nn.geometry.reversed_orientation); the full list otherwise, or
  // when not exactly half the edges are canonical (a pair at the cutoff rounded differently each way)
  torch::inductor::AOTIModelPackageLoader *graph = nullptr;
  bool paired = false;
  if ((package ? (bool) paired_graph : model_paired) && n_edges % 2 == 0) {
    auto canonical = [&](int64_t e) {
      const double *s = &shifts[3 * e];
      const bool negative = s[0] < 0 || (s[0] == 0 && (s[1] < 0 || (s[1] == 0 && s[2] < 0)));
      return senders[e] < receivers[e] || (senders[e] == receivers[e] && !negative);
    };
    int64_t n_half = 0;
    for (int64_t e = 0; e < n_edges; ++e) n_half += canonical(e) ? 1 : 0;
    if (2 * n_half == n_edges) {
      int64_t k = 0;
      for (int64_t e = 0; e < n_edges; ++e) {
        if (!canonical(e)) continue;
        senders[k] = senders[e];
        receivers[k] = receivers[e];
        for (int d = 0; d < 3; ++d) shifts[3 * k + d] = shifts[3 * e + d];
        ++k;
      }
      n_edges = n_half;
      paired = true;
      if (package) graph = paired_graph.get();
    }
  }
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor edge_index = torch::empty({2, n_edges}, long_opts);
  if (n_edges > 0) {
    std::memcpy(edge_index[0].data_ptr<int64_t>(), senders.data(), n_edges * sizeof(int64_t));
    std::memcpy(edge_index[1].data_ptr<int64_t>(), receivers.data(), n_edges * sizeof(int64_t));
  }
  torch::Tensor cell_shifts = torch::from_blob(shifts.data(), {n_edges, 3}, f64).clone();
  torch::Tensor numbers = torch::empty({nlocal}, long_opts);
  torch::Tensor positions = torch::empty({nlocal, 3}, f64);
  int64_t *zp = numbers.data_ptr<int64_t>();
  double *xp = positions.data_ptr<double>();
  for (int i = 0; i < nlocal; ++i) {
    zp[i] = type_to_z[type[i]];
    xp[3 * i] = x[i][0];
    xp[3 * i + 1] = x[i][1];
    xp[3 * i + 2] = x[i][2];
  }
  torch::Tensor cell = torch::zeros({3, 3}, f64);
  double *cp = cell.data_ptr<double>();
  cp[0] = h[0];
  cp[3] = h[5];
  cp[4] = h[1];
  cp[6] = h[4];
  cp[7] = h[3];
  cp[8] = h[2];
  torch::Tensor pbc = torch::ones({3}, torch::TensorOptions().dtype(torch::kBool));

  torch::Tensor forces, energy, atomic, model_virial;
  if (package)
    run_package({positions.to(model_dtype), numbers, cell.to(model_dtype), pbc, edge_index,
                 cell_shifts.to(model_dtype)}, forces, energy, atomic, model_virial, graph);
  else
    run_model(paired ? "compute_engine_paired" : "compute_engine", {positions.to(model_dtype), numbers,
              cell.to(model_dtype), pbc, edge_index, cell_shifts.to(model_dtype)}, forces, energy, atomic,
              model_virial);
  tally(forces.data_ptr<double>(), energy, atomic, nlocal, nlocal);
  // the model's virial -dE/d(strain) of the periodic cell (ghosts carry no forces here)
  if (vflag_global) {
    const double *v = model_virial.data_ptr<double>();
    virial[0] += v[0];    // xx
    virial[1] += v[4];    // yy
    virial[2] += v[8];    // zz
    virial[3] += v[1];    // xy
    virial[4] += v[2];    // xz
    virial[5] += v[5];    // yz
  }
}

namespace LAMMPS_NS {
Pair *create_pair_mlip(LAMMPS *lmp)
{
  return new PairMLIP(lmp);
}
}    // namespace LAMMPS_NS
