"""Building blocks below the models: neighbour lists, batching, geometry, cutoffs, radial bases, scatter."""
