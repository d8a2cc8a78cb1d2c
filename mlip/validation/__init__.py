"""Validating a potential as materials scientists do: properties of a structure under the model and
under a reference (``properties``), side by side in a report (``report``; ``mlip validate``)."""
