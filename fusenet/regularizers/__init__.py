"""Weight regularizers (see fusenet.regularizers)."""
