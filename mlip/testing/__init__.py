"""Reusable checks for energy models (NequIP-style): every registered model must pass them."""
