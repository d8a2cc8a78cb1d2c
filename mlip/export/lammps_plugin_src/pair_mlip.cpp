// pair_style mlip: see pair_mlip.h and docs/md_engines.md.
#include "pair_mlip.h"

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
#include <cstring>
#include <unordered_map>

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

}    // namespace

PairMLIP::PairMLIP(LAMMPS *lmp) :
    Pair(lmp), model_loaded(false), model_cutoff(0.0), receptive_field(0.0), ghost_centres(false), can_fold(false), allow_fold(true),
    fold_ghosts(false),
    model_dtype(torch::kFloat64)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  // the virial comes from this style's own forces (or the model), not from LAMMPS' sum of x f over
  // the force array, which under hybrid/overlay also holds the other styles' forces
  no_virial_fdotr_compute = 1;
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
  // optional: 'ghosts shell' keeps the ghost shell out to the receptive field even where ghosts
  // could be folded (one rank, periodic box): for comparisons and debugging
  allow_fold = true;
  if (narg == 2 && std::string(arg[0]) == "ghosts" && (std::string(arg[1]) == "fold" || std::string(arg[1]) == "shell")) {
    allow_fold = std::string(arg[1]) == "fold";
  } else if (narg != 0) {
    error->all(FLERR, "pair_style mlip takes no arguments but the optional 'ghosts fold' (default) or 'ghosts shell'; "
               "the model file goes in pair_coeff");
  }
}

void PairMLIP::load_model(const std::string &path)
{
  package.reset();
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
// atomic_energies, forces, stress, virial); it has no compute_local, so it runs only where ghosts
// fold onto their owners (init_style refuses the rest). mlip refuses to compile D3 or ZBL models,
// so there is no long-range term to leave out.
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
  receptive_field = model_cutoff;    // ghosts are folded: they need to reach one cutoff only
  ghost_centres = false;
  can_fold = true;
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
  // ghosts need only reach one cutoff, whatever the model's receptive field. Otherwise (MPI ranks,
  // a non-periodic direction, no atom map, a model exported before compute_engine) the ghost
  // shell must reach the receptive field and edges centred on ghosts go to compute_local. Owners
  // are found by atom ID (a table rebuilt each step: no 'atom_modify map' needed).
  fold_ghosts = allow_fold && can_fold && comm->nprocs == 1 && domain->xperiodic && domain->yperiodic &&
      domain->zperiodic;
  if (package && !fold_ghosts)
    error->all(FLERR, "pair_style mlip: {} (AOTInductor) runs only on one MPI rank in a box periodic in x, y and z, "
               "with ghosts folded (not 'ghosts shell'); here {}. Use the TorchScript file instead: "
               "'mlip export <run>' writes model.pt", model_path,
               !allow_fold ? "'ghosts shell' was asked for" : comm->nprocs > 1 ? "there are several ranks"
                                                                             : "a direction is not periodic");
  const bool deep_ghosts = ghost_centres && !fold_ghosts;
  ghostneigh = deep_ghosts ? 1 : 0;
  int flags = NeighConst::REQ_FULL;
  if (deep_ghosts) flags |= NeighConst::REQ_GHOST;
  neighbor->add_request(this, flags);
  if (comm->me == 0 && ghost_centres)
    utils::logmesg(lmp, "pair_style mlip: {}\n", fold_ghosts ? "one rank, periodic box: ghost atoms folded onto "
                   "their owners (ghosts reach one cutoff)" : "ghost atoms reach the receptive field");
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
  if (fold_ghosts) {
    compute_folded(eflag, vflag);
    return;
  }

  double **x = atom->x;
  int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const double cutsq_model = model_cutoff * model_cutoff;

  // Edges i -> j with |x_j - x_i| < cutoff (ghost positions are image positions: no shifts).
  // The model sees the local atoms (indices 0..nlocal-1, as in LAMMPS), then only the ghosts it
  // needs: neighbours of local atoms and, for message passing with L = receptive_field / cutoff
  // layers, ghosts up to L - 1 edges away from a local atom are centres with their own edges.
  const int hops = ghost_centres ? std::max(0, (int) std::ceil(receptive_field / model_cutoff - 1e-9) - 1) : 0;
  if ((int) model_index.size() < nall) model_index.resize(nall);
  std::fill(model_index.begin(), model_index.begin() + nall, -1);
  lammps_index.clear();
  for (int i = 0; i < nlocal; ++i) {
    model_index[i] = i;
    lammps_index.push_back(i);
  }
  std::vector<int> centres(list->ilist, list->ilist + list->inum);
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
  const int64_t n_model = (int64_t) lammps_index.size();
  const int64_t n_edges = (int64_t) senders.size();
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor edge_index = torch::empty({2, n_edges}, long_opts);
  if (n_edges > 0) {
    std::memcpy(edge_index[0].data_ptr<int64_t>(), senders.data(), n_edges * sizeof(int64_t));
    std::memcpy(edge_index[1].data_ptr<int64_t>(), receivers.data(), n_edges * sizeof(int64_t));
  }
  torch::Tensor numbers = torch::empty({n_model}, long_opts);
  torch::Tensor positions64 = torch::empty({n_model, 3}, torch::TensorOptions().dtype(torch::kFloat64));
  int64_t *zp = numbers.data_ptr<int64_t>();
  double *xp = positions64.data_ptr<double>();
  for (int64_t k = 0; k < n_model; ++k) {
    const int i = lammps_index[k];
    zp[k] = type_to_z[type[i]];
    xp[3 * k] = x[i][0];
    xp[3 * k + 1] = x[i][1];
    xp[3 * k + 2] = x[i][2];
  }
  torch::Tensor positions = positions64.to(model_dtype);

  torch::Tensor forces, energy, atomic, unused_virial;
  // the profiling executor's optimised graphs run this model 1.5-4x slower on CPU than the
  // plain interpreter (measured with torch 2.13); scoped in run_model, so the host is unaffected
  run_model("compute_local", {positions, numbers, edge_index, (int64_t) nlocal}, forces, energy, atomic,
            unused_virial);
  const double *fp = forces.data_ptr<double>();
  tally(fp, energy, atomic, n_model);
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
// documented order (energy, atomic_energies, forces, stress, virial)
void PairMLIP::run_package(std::vector<torch::Tensor> inputs, torch::Tensor &forces, torch::Tensor &energy,
                           torch::Tensor &atomic, torch::Tensor &virial_out)
{
  try {
    auto out = package->run(inputs);
    energy = out[0];
    atomic = out[1].to(torch::kFloat64).contiguous();
    forces = out[2].to(torch::kFloat64).contiguous();
    virial_out = out[4].to(torch::kFloat64).contiguous();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style mlip: model evaluation failed: {}", e.what());
  }
  // a compiled graph cannot raise: its refusals (overlapping atoms, an unknown element) are NaN
  if (!std::isfinite(energy.item<double>()))
    error->one(FLERR, "pair_style mlip: {} returned a non-finite energy at step {}: atoms on top of each other "
               "(closer than 0.1 A) or far outside the training data; model.pt names the atoms", model_path,
               (long) update->ntimestep);
}

void PairMLIP::tally(const double *fp, const torch::Tensor &energy, const torch::Tensor &atomic, int64_t n_model)
{
  // forces of model atom k go to LAMMPS atom lammps_index[k] (ghosts: summed to owners by LAMMPS)
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
    for (int i = 0; i < atom->nlocal; ++i) eatom[i] += ep[i];
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
  const int64_t n_edges = (int64_t) senders.size();
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
                 cell_shifts.to(model_dtype)}, forces, energy, atomic, model_virial);
  else
    run_model("compute_engine", {positions.to(model_dtype), numbers, cell.to(model_dtype), pbc, edge_index,
                                 cell_shifts.to(model_dtype)}, forces, energy, atomic, model_virial);
  tally(forces.data_ptr<double>(), energy, atomic, nlocal);
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
