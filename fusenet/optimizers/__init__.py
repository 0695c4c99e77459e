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

Full-batch and derivative-free optimizers minimise a function of the flat parameter vector
(the training loop's protocol is in :mod:`~fusenet.optimizers.flat`); they refuse mini-batch steps:

- :mod:`~fusenet.optimizers.full_batch`: LBFGS, BFGS, ConjugateGradient, NewtonCG, TrustRegion (SciPy)
- :mod:`~fusenet.optimizers.metaheuristics`: DifferentialEvolution, DualAnnealing (SciPy)
- :mod:`~fusenet.optimizers.population`: SimulatedAnnealing, ParticleSwarm, GeneticAlgorithm
- :func:`minimize`: ``minimize(fn, x0, method="lbfgs", ...)`` over all of them

``get("adam")`` (or ``"Adam"``, ``"lbfgs"``, ``"newton_cg"``, a config dict, an optimizer object),
``serialize``/``deserialize`` (fusenet's classes and those passed to ``register_optimizer`` only).
"""

from . import schedules
from .adam import Adam, Adamax, AdamW, Nadam, RAdam
from .adaptive import Adadelta, Adagrad, Ftrl, RMSprop
from .base import Optimizer, available, deserialize, get, get_optimizer_class, register_optimizer, serialize
from .factored import Adafactor, Muon, newton_schulz
from .flat import FlatObjective, FlatParameters, IterationInfo, check_batch_size, is_full_batch, make_objective
from .full_batch import BFGS, LBFGS, ConjugateGradient, FullBatchOptimizer, NewtonCG, TrustRegion
from .metaheuristics import DerivativeFreeOptimizer, DifferentialEvolution, DualAnnealing
from .minimize import minimize
from .population import GeneticAlgorithm, ParticleSwarm, SimulatedAnnealing
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
    "FullBatchOptimizer",
    "LBFGS",
    "BFGS",
    "ConjugateGradient",
    "NewtonCG",
    "TrustRegion",
    "DerivativeFreeOptimizer",
    "DifferentialEvolution",
    "DualAnnealing",
    "SimulatedAnnealing",
    "ParticleSwarm",
    "GeneticAlgorithm",
    "minimize",
    "FlatParameters",
    "FlatObjective",
    "IterationInfo",
    "make_objective",
    "is_full_batch",
    "check_batch_size",
    "schedules",
    "available",
    "get",
    "get_optimizer_class",
    "register_optimizer",
    "serialize",
    "deserialize",
]
