"""Gradient optimizers (Keras 3 names and formulas; RAdam, Rprop and ASGD as ``torch.optim``) and
learning-rate schedules (:mod:`fusenet.optimizers.schedules`).

An optimizer updates parameters in place: ``optimizer.apply(layers)`` collects every layer's
``gradient_pairs()`` and calls ``optimizer.apply_gradients([(grad, param), ...])``. The shared
step (clipping, decoupled weight decay, slots, the iteration count, ``get_state``/``set_state``)
is in :mod:`fusenet.optimizers.base`; the optimizers, simplest first:

- :mod:`~fusenet.optimizers.sgd`: SGD, Lion, Rprop, ASGD
- :mod:`~fusenet.optimizers.adaptive`: Adagrad, RMSprop, Adadelta, Ftrl
- :mod:`~fusenet.optimizers.adam`: Adam, AdamW, Adamax, Nadam, RAdam
- :mod:`~fusenet.optimizers.factored`: Adafactor, Muon

``get("adam")`` (or ``"Adam"``, a config dict, an optimizer object), ``serialize``/``deserialize``
(fusenet's classes and those passed to ``register_optimizer`` only).
"""

from . import schedules
from .adam import Adam, Adamax, AdamW, Nadam, RAdam
from .adaptive import Adadelta, Adagrad, Ftrl, RMSprop
from .base import Optimizer, available, deserialize, get, get_optimizer_class, register_optimizer, serialize
from .factored import Adafactor, Muon, newton_schulz
from .sgd import ASGD, SGD, Lion, Rprop

__all__ = [
    "Optimizer",
    "SGD",
    "Lion",
    "Rprop",
    "ASGD",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Ftrl",
    "Adam",
    "AdamW",
    "Adamax",
    "Nadam",
    "RAdam",
    "Adafactor",
    "Muon",
    "newton_schulz",
    "schedules",
    "available",
    "get",
    "get_optimizer_class",
    "register_optimizer",
    "serialize",
    "deserialize",
]
