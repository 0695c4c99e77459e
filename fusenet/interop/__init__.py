"""Weight interchange with PyTorch and Keras.

- :func:`from_torch` turns a ``torch.nn.Sequential`` (Linear, Conv1d/2d, BatchNorm1d/2d, the
  activations, pooling, Flatten, Dropout, LSTM/GRU, Embedding, LayerNorm, ...) into a fusenet
  :class:`~fusenet.models.Sequential` with the same weights; :func:`to_torch` goes the other way.
  Layouts, gate orders and the Flatten permutation are handled (see :mod:`fusenet.interop._torch`).
  ``RNNOutput``, ``ToChannelsFirst`` and ``ToChannelsLast`` are the small ``torch.nn`` modules the
  conversion uses (available as attributes of this package when torch is installed).
- Keras 3 ``.weights.h5`` files: :func:`load_keras_weights` / :func:`save_keras_weights`, also
  reached through ``model.load_weights("x.weights.h5")`` and
  ``model.save_weights("x.weights.h5", format="keras-h5")`` (optional ``h5py``).
"""

from ._keras_h5 import is_hdf5_file, keras_weight_paths, load_keras_weights, save_keras_weights
from ._from_torch import from_torch, supported_torch_modules
from ._to_torch import supported_fusenet_layers, to_torch

__all__ = ["from_torch", "to_torch", "supported_torch_modules", "supported_fusenet_layers", "load_keras_weights",
           "save_keras_weights", "keras_weight_paths", "is_hdf5_file", "RNNOutput", "ToChannelsFirst", "ToChannelsLast"]

_TORCH_MODULES = ("RNNOutput", "ToChannelsFirst", "ToChannelsLast")


def __getattr__(name):
    if name in _TORCH_MODULES:  # torch.nn modules: importing them imports torch, so only on demand
        from . import _torch_modules

        return getattr(_torch_modules, name)
    raise AttributeError(f"module 'fusenet.interop' has no attribute {name!r}")
