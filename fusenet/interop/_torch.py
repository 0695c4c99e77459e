"""PyTorch <-> fusenet conventions shared by :func:`~fusenet.interop.from_torch` and :func:`~fusenet.interop.to_torch`.

Layouts. fusenet is channels-last (images ``(N, H, W, C)``), PyTorch channels-first
(``(N, C, H, W)``). A converted model takes its data in its own framework's layout: the fusenet
model of a torch CNN takes channels-last images, the torch model of a fusenet CNN takes
channels-first ones, and both give the same numbers. What that needs:

- kernels: torch ``Conv2d`` weight ``(out, in // groups, kh, kw)`` <-> Keras ``(kh, kw, in // groups, out)``;
  ``Linear`` weight ``(out, in)`` <-> Dense kernel ``(in, out)``;
- Flatten: torch flattens ``(C, H, W)``, fusenet ``(H, W, C)``. Feature ``f = s * C + c`` of
  fusenet (``s`` the flat spatial position) is feature ``t = c * S + s`` of torch, so the first
  Linear after a Flatten of channels-first data gets its kernel rows permuted (and so do the
  per-feature parameters of a BatchNorm1d, LayerNorm or PReLU in between). ``S`` is read off the
  Linear's ``in_features``, so no input size is needed;
- recurrent gates: torch LSTM ``i, f, g, o`` is Keras ``i, f, c, o`` (same order; torch's two biases
  add up into Keras's one); torch GRU ``r, z, n`` is Keras ``z, r, h`` with ``reset_after=True``
  (the first two blocks swap; ``b_ih``/``b_hh`` are the rows of Keras's ``(2, 3u)`` bias);
- BatchNorm: torch ``momentum=m`` is Keras ``momentum=1-m``; ``eps``, ``weight``/``bias``,
  ``running_mean``/``running_var`` map one to one (at inference both compute
  ``(x - mean) / sqrt(var + eps) * gamma + beta``).

An ``nn.LSTM``/``nn.GRU`` inside an ``nn.Sequential`` must be followed by
:class:`fusenet.interop.RNNOutput` (it returns ``(output, state)``); ``RNNOutput(False)`` is Keras's
``return_sequences=False`` (the last step). :class:`~fusenet.interop.ToChannelsFirst` /
:class:`~fusenet.interop.ToChannelsLast` mark a change from a sequence part to a convolutional one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["torch_modules", "as_numpy", "pair", "flat_order"]


def torch_modules():
    """``(torch, torch.nn, fusenet.interop._torch_modules)``; ``ImportError`` with the fix when torch is missing."""
    try:
        import torch
        from torch import nn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("fusenet.interop.from_torch/to_torch need PyTorch: pip install torch "
                          "(the fusenet extra 'torch').") from exc
    from . import _torch_modules as tm

    return torch, nn, tm


def as_numpy(t):
    """A NumPy copy of a torch tensor."""
    return t.detach().cpu().numpy().copy()


def pair(v, n):
    """A torch size argument (int or tuple) as an ``n``-tuple."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def flat_order(n, channels, owner):
    """``perm`` with fusenet feature ``f`` = torch feature ``perm[f]`` after flattening ``channels`` channels."""
    if n % channels:
        raise ValueError(f"{owner}: {n} features cannot come from flattening {channels} channels.")
    spatial = n // channels
    f = np.arange(n)
    s, c = np.divmod(f, channels)
    return c * spatial + s
