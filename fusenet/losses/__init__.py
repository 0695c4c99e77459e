"""fusenet.losses (filled in by its issue)."""
