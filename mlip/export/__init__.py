"""Exporting trained models for MD engines: TorchScript files that run without mlip, and
LAMMPS-native files (pair_style table, eam/alloy) for classical models."""

from mlip.export.lammps_tables import LammpsPotential, write_lammps_files  # noqa: F401
from mlip.export.torchscript import ExportedPotential, export_torchscript, load_exported  # noqa: F401
