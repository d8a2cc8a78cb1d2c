"""Building blocks below the models: neighbour lists, batching, geometry, cutoffs, radial bases, scatter;
``equivariant``: irreps, Clebsch-Gordan couplings, channel mixing, symmetric contraction, interaction layers."""
