"""Exporting trained models for MD engines (TorchScript files that run without mlip)."""

from mlip.export.torchscript import ExportedPotential, export_torchscript, load_exported  # noqa: F401
