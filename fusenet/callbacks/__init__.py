"""fusenet.callbacks (filled in by its issue)."""
