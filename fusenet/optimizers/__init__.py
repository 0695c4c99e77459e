"""fusenet.optimizers (filled in by its issue)."""
