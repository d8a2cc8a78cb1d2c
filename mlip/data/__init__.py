"""Reading DFT data, checking it, splitting it and turning frames into graphs."""
