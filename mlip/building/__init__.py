"""Building training sets: starting structures (``structures``), generators of strained, defective,
surface, phase, dimer and isolated-atom candidates and MD exploration (``generators``), oracles
(``oracles``, ``pyscf_calculator``), parallel cached labelling (``labelling``), recipes
(``recipe``: ``mlip dataset build``) and convergence of oracle settings (``convergence``)."""
