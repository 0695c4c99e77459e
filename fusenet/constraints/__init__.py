"""Weight constraints."""
