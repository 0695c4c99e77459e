"""fusenet: a layer-based neural-network framework on NumPy and SciPy, with static layer fusion."""

from . import activations, initializers, layers, losses
from .utils import floatx, set_floatx, set_random_seed

__version__ = "0.1.0"

__all__ = ["__version__", "activations", "initializers", "layers", "losses", "floatx", "set_floatx", "set_random_seed"]
