"""Checks that exported files run without mlip: ``WITHOUT_MLIP`` is the start of a Python script
(for ``python -c``) that makes importing mlip, e3nn, vesin and ASE fail, checks that it does, and
imports torch. Tests append their own lines and read the JSON the script prints."""

WITHOUT_MLIP = """
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlip", "e3nn", "vesin", "ase"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
try:
    import mlip
    raise SystemExit("mlip was importable")
except ImportError:
    pass
import torch
"""
