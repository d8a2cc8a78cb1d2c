"""Classical potentials fitted by the same trainer as the neural models: Lennard-Jones and Morse
per species pair (``pair.py``), a tabulated cubic-spline pair potential (``pair.py``) and the
embedded-atom method (``eam.py``). Each adds E0 per species; otherwise its parameters are physical
(eV, Å) or knot values of tabulated functions (``spline.py``)."""

from mlip.models.classical.eam import EmbeddedAtomModel  # noqa: F401
from mlip.models.classical.pair import LennardJones, Morse, PairPotential, SplinePair  # noqa: F401
