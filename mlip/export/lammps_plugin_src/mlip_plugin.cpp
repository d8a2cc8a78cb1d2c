// Registers pair_style mlip with LAMMPS when loaded by `plugin load mlipplugin.so`.
// Kept free of torch and LAMMPS headers so that it compiles in a moment.
#include "plugin_abi.h"

#ifndef MLIP_LAMMPS_VERSION
#define MLIP_LAMMPS_VERSION nullptr
#endif

namespace LAMMPS_NS {
class LAMMPS;
class Pair;
Pair *create_pair_mlip(LAMMPS *lmp);    // defined in pair_mlip.cpp
}    // namespace LAMMPS_NS

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = MLIP_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "mlip";
  plugin.info = "mlip pair style (TorchScript model.pt from mlip)";
  plugin.author = "mlip developers";
  plugin.creator.v1 = (mlip_plugin_factory_lmp *) &LAMMPS_NS::create_pair_mlip;
  plugin.handle = handle;
  ((lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
