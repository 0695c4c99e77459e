"""Operations that move elements without arithmetic: reshape, transpose, expand_dims, squeeze,
broadcast_to, concatenate, stack, split and pad.

Their gradients move the elements back: reshape back, the inverse permutation, the sum over
broadcast axes, slices of the upstream gradient (concatenate, stack, split), the un-padded
centre (pad).
"""

from __future__ import annotations

import numbers

import numpy as np

from ._common import lift_tensor, normalize_axes, record, sum_to
from ..tensor import Tensor

__all__ = [
    "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "broadcast_to",
    "concatenate", "stack", "split", "pad",
]


def _axis(axis, ndim: int, owner: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral, np.integer)):
        raise TypeError(f"{owner}: expected axis to be an int. Received: axis={axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{owner}: axis {axis} is out of range for tensors of rank {ndim}. Received: axis={axis}")
    return int(axis) % ndim


def reshape(x, shape) -> Tensor:
    """``x`` with a new ``shape`` (one entry may be -1). Gradient: ``g`` reshaped back."""
    x = lift_tensor(x)
    shape = (shape,) if isinstance(shape, (numbers.Integral, np.integer)) else tuple(int(n) for n in shape)
    try:
        out = x._value.reshape(shape)
    except ValueError:
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) into shape {shape}. "
            f"Received: x.shape={x.shape}, shape={shape}"
        ) from None
    if out.shape == x.shape:
        return x
    return record("reshape", out, (x,), (lambda g: reshape(g, x.shape),), {"shape": out.shape})


def transpose(x, axes=None) -> Tensor:
    """Permute the axes (reverse them when ``axes`` is None). Gradient: the inverse permutation."""
    x = lift_tensor(x)
    perm = tuple(range(x.ndim - 1, -1, -1)) if axes is None else tuple(int(a) % max(x.ndim, 1) for a in axes)
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"transpose: expected a permutation of the {x.ndim} axes. Received: axes={axes!r}, x.shape={x.shape}")
    if perm == tuple(range(x.ndim)):
        return x
    inverse = tuple(int(i) for i in np.argsort(perm))
    return record("transpose", np.transpose(x._value, perm), (x,), (lambda g: transpose(g, inverse),), {"axes": perm})


def swapaxes(x, a: int, b: int) -> Tensor:
    """Exchange axes ``a`` and ``b`` (a :func:`transpose`)."""
    x = lift_tensor(x)
    perm = list(range(x.ndim))
    a, b = _axis(a, x.ndim, "swapaxes"), _axis(b, x.ndim, "swapaxes")
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def expand_dims(x, axis) -> Tensor:
    """Insert axes of size 1 at ``axis`` (an int or a tuple). Gradient: ``g`` reshaped back."""
    x = lift_tensor(x)
    try:
        out = np.expand_dims(x._value, axis)
    except (ValueError, np.exceptions.AxisError) as exc:
        raise ValueError(f"expand_dims: {exc}. Received: x.shape={x.shape}, axis={axis!r}") from None
    return record("expand_dims", out, (x,), (lambda g: reshape(g, x.shape),), {"axis": axis})


def squeeze(x, axis=None) -> Tensor:
    """Remove axes of size 1 (all of them when ``axis`` is None). Gradient: ``g`` reshaped back."""
    x = lift_tensor(x)
    if axis is not None:
        axes = normalize_axes(axis, x.ndim, "squeeze")
        bad = [a for a in axes if x.shape[a] != 1]
        if bad:
            raise ValueError(
                f"squeeze: expected the squeezed axes to have size 1, but axis {bad[0]} has size {x.shape[bad[0]]}. "
                f"Received: x.shape={x.shape}, axis={axis!r}"
            )
    out = np.squeeze(x._value, axis=axis)
    return record("squeeze", out, (x,), (lambda g: reshape(g, x.shape),), {"axis": axis})


def broadcast_to(x, shape) -> Tensor:
    """``x`` broadcast to ``shape`` (NumPy rules). Gradient: ``g`` summed over the broadcast axes."""
    x = lift_tensor(x)
    shape = tuple(int(n) for n in shape)
    if x.shape == shape:
        return x
    try:
        out = np.broadcast_to(x._value, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast a tensor of shape {x.shape} to shape {shape}.") from None
    return record("broadcast_to", out, (x,), (lambda g: sum_to(g, x),), {"shape": shape})


def _slice_along(g: Tensor, axis: int, index) -> Tensor:
    from .indexing import getitem

    return getitem(g, (slice(None),) * axis + (index,))


def concatenate(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing ``axis``. Gradient: the matching slice of ``g`` to each."""
    xs = [lift_tensor(t) for t in tensors]
    if not xs:
        raise ValueError("concatenate: expected at least one tensor. Received: an empty sequence")
    ax = _axis(axis, xs[0].ndim, "concatenate") if xs[0].ndim else axis
    try:
        out = np.concatenate([t._value for t in xs], axis=ax)
    except ValueError:
        raise ValueError(
            f"concatenate: expected tensors of the same rank whose shapes agree except along axis {axis}. "
            f"Received shapes: {[t.shape for t in xs]}"
        ) from None
    bounds = np.cumsum([0] + [t.shape[ax] for t in xs])

    def vjp(g, needs):
        return tuple(_slice_along(g, ax, slice(int(bounds[i]), int(bounds[i + 1]))) if need else None
                     for i, need in enumerate(needs))

    return record("concatenate", out, tuple(xs), vjp, {"axis": ax})


def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new ``axis``. Gradient: ``g`` indexed at each position."""
    xs = [lift_tensor(t) for t in tensors]
    if not xs:
        raise ValueError("stack: expected at least one tensor. Received: an empty sequence")
    shapes = {t.shape for t in xs}
    if len(shapes) != 1:
        raise ValueError(f"stack: expected tensors of one shape. Received shapes: {[t.shape for t in xs]}")
    ax = _axis(axis, xs[0].ndim + 1, "stack")
    out = np.stack([t._value for t in xs], axis=ax)

    def vjp(g, needs):
        return tuple(_slice_along(g, ax, i) if need else None for i, need in enumerate(needs))

    return record("stack", out, tuple(xs), vjp, {"axis": ax})


def split(x, indices_or_sections, axis: int = 0) -> list:
    """Split ``x`` along ``axis`` into equal sections (an int) or at the given indices (NumPy).

    Each part is a slice of ``x`` (its own node); the gradient of ``x`` gathers the parts' gradients.
    """
    x = lift_tensor(x)
    ax = _axis(axis, x.ndim, "split")
    n = x.shape[ax]
    if isinstance(indices_or_sections, (numbers.Integral, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0 or n % sections:
            raise ValueError(
                f"split: expected a number of sections that divides the axis size {n}. "
                f"Received: indices_or_sections={indices_or_sections}, x.shape={x.shape}, axis={axis}"
            )
        cuts = [i * (n // sections) for i in range(1, sections)]
    else:
        cuts = [int(i) for i in indices_or_sections]
    bounds = [0] + cuts + [n]
    return [_slice_along(x, ax, slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


def pad(x, pad_width, constant_values=0) -> Tensor:
    """Pad with a constant (NumPy ``pad_width``: an int, ``(before, after)`` or one pair per axis).

    Gradient: the centre of ``g`` (the slice the input occupies).
    """
    x = lift_tensor(x)
    try:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    except ValueError:
        raise ValueError(
            f"pad: expected pad_width to be an int, a (before, after) pair or one pair per axis ({x.ndim}). "
            f"Received: pad_width={pad_width!r}"
        ) from None
    if (widths < 0).any():
        raise ValueError(f"pad: expected non-negative pad widths. Received: pad_width={pad_width!r}")
    out = np.pad(x._value, widths, mode="constant", constant_values=constant_values)
    centre = tuple(slice(int(b), int(b) + n) for (b, _), n in zip(widths, x.shape))

    def vjp(g):
        from .indexing import getitem

        return getitem(g, centre)

    return record("pad", out, (x,), (vjp,), {"pad_width": [tuple(int(v) for v in w) for w in widths]})
