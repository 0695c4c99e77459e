"""Losses of Keras 3 and torch.nn, each an object with a value and a gradient.

``loss(y_true, y_pred, sample_weight=None)`` returns the reduced loss (a Python float, or the
weighted per-sample losses with ``reduction="none"``); ``loss.gradient(y_true, y_pred,
sample_weight=None)`` returns its gradient with respect to ``y_pred`` (see
:mod:`fusenet.losses.base` for reductions, sample weights and dtypes). ``get(name)`` accepts
Keras names and aliases (``"mse"``, ``"categorical_crossentropy"``, ``"kld"``, ...), class names
(``"MeanSquaredError"``) and torch class names (``"SmoothL1Loss"``, ``"NLLLoss"``, ...).

Families: :mod:`~fusenet.losses.regression`, :mod:`~fusenet.losses.crossentropy`,
:mod:`~fusenet.losses.probabilistic`, :mod:`~fusenet.losses.hinge`,
:mod:`~fusenet.losses.embedding`, :mod:`~fusenet.losses.segmentation`, :mod:`~fusenet.losses.ctc`.
"""

from .base import REDUCTIONS, ElementwiseLoss, Loss, available, deserialize, get, register_loss, serialize
from .crossentropy import (
    NLL,
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    CategoricalGeneralizedCrossEntropy,
    SparseCategoricalCrossentropy,
)
from .ctc import CTC
from .embedding import Circle, Contrastive, CosineEmbedding, TripletMargin
from .hinge import (
    CategoricalHinge,
    Hinge,
    HingeEmbedding,
    MarginRanking,
    MultiLabelMargin,
    MultiLabelSoftMargin,
    MultiMargin,
    SoftMargin,
    SquaredHinge,
)
from .probabilistic import GaussianNLL, KLDivergence, Poisson, PoissonNLL
from .regression import (
    CosineSimilarity,
    Huber,
    LogCosh,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    SmoothL1,
)
from .segmentation import IoU, Dice, Tversky

__all__ = [
    "REDUCTIONS",
    "Loss",
    "ElementwiseLoss",
    "available",
    "get",
    "serialize",
    "deserialize",
    "register_loss",
    # regression
    "MeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "Huber",
    "SmoothL1",
    "LogCosh",
    "CosineSimilarity",
    # cross-entropy
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalGeneralizedCrossEntropy",
    "NLL",
    # probabilistic
    "KLDivergence",
    "Poisson",
    "PoissonNLL",
    "GaussianNLL",
    # hinge and margin
    "Hinge",
    "SquaredHinge",
    "CategoricalHinge",
    "MultiMargin",
    "MultiLabelMargin",
    "MultiLabelSoftMargin",
    "SoftMargin",
    "HingeEmbedding",
    "MarginRanking",
    # embedding
    "CosineEmbedding",
    "TripletMargin",
    "Contrastive",
    "Circle",
    # segmentation
    "Dice",
    "Tversky",
    "IoU",
    # sequence
    "CTC",
]
