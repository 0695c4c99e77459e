"""fusenet.fusion (filled in by its issue)."""
