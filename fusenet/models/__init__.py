"""fusenet.models (filled in by its issue)."""
