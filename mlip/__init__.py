"""mlip: a PyTorch trainer for machine-learned interatomic potentials.

Units everywhere: energy eV, length Å, forces eV/Å, stress eV/Å³ (ASE sign: positive = tensile).
"""

__version__ = "0.1.0"
