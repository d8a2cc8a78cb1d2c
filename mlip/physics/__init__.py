"""Forces and stress from an energy model by automatic differentiation."""

from mlip.physics.forces import ForcesAndStress  # noqa: F401
