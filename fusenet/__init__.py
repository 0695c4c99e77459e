"""fusenet: a layer-based neural-network framework on NumPy and SciPy, with static layer fusion."""

from . import activations, autodiff, callbacks, constraints, errors, fusion, graph, initializers, layers, losses, metrics, models, optimizers, regularizers
from .utils import floatx, set_floatx, set_random_seed

__version__ = "0.1.0"

__all__ = [
    "__version__", "activations", "autodiff", "callbacks", "constraints", "errors", "fusion", "graph", "initializers", "layers", "losses",
    "metrics", "models", "optimizers", "regularizers", "floatx", "set_floatx", "set_random_seed",
]
