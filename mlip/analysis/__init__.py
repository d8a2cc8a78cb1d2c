"""Reports on trained models: parity plots and result tables."""
