// pair_style mlip: a TorchScript model exported by mlip (model.pt), or its AOTInductor package
// (model.pt2; one rank, periodic box), on LAMMPS' full neighbour list with ghost atoms. Energies
// of local atoms, forces on local and ghost atoms (summed back to their owners by LAMMPS with
// newton_pair on), global virial by sum(x f) over all atoms. Message-passing models run in one of
// three ways (pair_style mlip ghosts fold|exchange|shell): ghosts folded onto their owners (one
// rank, periodic box), node features exchanged between ranks after each layer (ghosts one cutoff
// deep), or a ghost shell as deep as the receptive field with every layer recomputed on it.
#ifndef MLIP_PAIR_MLIP_H
#define MLIP_PAIR_MLIP_H

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include "pair.h"

#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairMLIP : public Pair {
 public:
  PairMLIP(class LAMMPS *);
  ~PairMLIP() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  // node features of the local atoms [nlocal, ...] -> those of the model's atoms [n_model, ...]
  // (ghosts from their owners, through LAMMPS' forward communication), and back for gradients
  // (ghost rows summed onto their owners: reverse communication)
  torch::Tensor forward_exchange(const torch::Tensor &h_local);
  torch::Tensor reverse_exchange(const torch::Tensor &grad_model);

 protected:
  void allocate();
  void load_model(const std::string &path);
  void load_package(const std::string &path);
  void compute_folded(int eflag, int vflag);
  int64_t ghost_graph(int hops, int b0, int b1, const int *centres_begin, const int *centres_end,
                      torch::Tensor &positions64, torch::Tensor &numbers, torch::Tensor &edge_index,
                      bool pair_local = false);
  int64_t pair_local_edges(int64_t n_own);
  void idle_exchange(int t, bool forward);
  void clear_comm_buf(int width);
  void run_exchange(const torch::Tensor &positions, const torch::Tensor &numbers, const torch::Tensor &edge_index,
                    int64_t nlocal, int64_t n_pairs, torch::Tensor &forces, torch::Tensor &energy,
                    torch::Tensor &atomic);
  void run_model(const char *method, std::vector<torch::jit::IValue> inputs, torch::Tensor &forces,
                 torch::Tensor &energy, torch::Tensor &atomic, torch::Tensor &virial_out);
  void run_package(std::vector<torch::Tensor> inputs, torch::Tensor &forces, torch::Tensor &energy,
                   torch::Tensor &atomic, torch::Tensor &virial_out,
                   torch::inductor::AOTIModelPackageLoader *graph = nullptr);
  void tally(const double *fp, const torch::Tensor &energy, const torch::Tensor &atomic, int64_t n_model, int64_t n_own);

  torch::jit::Module model;                                        // model.pt
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> package;  // model.pt2 (its "model" graph)
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> local_graph;  // its "local" graph, if any
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> paired_graph;  // its "paired" graph, if any
  bool model_loaded;
  std::string model_path;
  double model_cutoff;              // Å, edges shorter than this go to the model
  double receptive_field;           // Å, how far ghost atoms must reach
  bool ghost_centres;               // message passing: edges centred on ghosts are needed too
  bool can_fold;                    // the model has compute_engine (periodic graph with cell shifts)
  bool model_paired;                // model.pt: compute_engine_paired pays (the radial network once per pair)
  bool exchange_paired;             // model.pt: so does exchange_begin_paired (pairs of local atoms)
  std::string ghost_mode;           // pair_style mlip ghosts fold (default) | exchange | shell
  static constexpr int DEFAULT_BLOCK = 512;
  int block_size;                   // pair_style mlip block N: local atoms per call of a local model
  bool blocked;                     // this run: a local model on blocks of block_size local atoms
  bool can_exchange;                // the model has the exchange_* methods (layer by layer)
  bool package_local;               // model.pt2 of a model without message passing (runs on ghosts too)
  bool fold_ghosts;                 // this run: one rank, periodic box, atom map: ghosts -> owners
  bool exchange_features;           // this run: features exchanged after each layer, ghosts one cutoff
  std::vector<int64_t> exchange_widths;  // floats per atom of each layer's output
  int comm_width;                   // floats per atom of the exchange in progress
  int reverse_calls;                // reverse exchanges made by this step's backward pass
  std::vector<double> comm_buf;     // [nall, comm_width] rows of the exchange in progress
  torch::ScalarType model_dtype;
  std::vector<int64_t> model_species;    // atomic numbers the model knows
  std::vector<int64_t> type_to_z;        // LAMMPS type (1-based) -> atomic number
  // work arrays of compute(), kept between steps
  std::vector<int> model_index;          // LAMMPS atom index -> model atom index, -1 if not passed
  std::vector<int> lammps_index;         // model atom index -> LAMMPS atom index
  std::vector<int64_t> senders, receivers;
  std::vector<int64_t> paired_senders, paired_receivers;  // pair_local_edges: the edges reordered
  int64_t local_pairs;                   // pair_local_edges of this step's graph (-1: not paired)
  std::vector<double> shifts;            // compute_folded: lattice shift of each edge's receiver
  std::vector<int> owner_of_tag;         // compute_folded: atom ID -> local index
  std::vector<int> centre_order, centre_start, centre_fill;  // compute: the neighbour list's centres by block
};

}    // namespace LAMMPS_NS

#endif
