"""Loss, metrics, the Lightning module and data module, and evaluation."""
