"""Indexing (``x[idx]``, :func:`take`) and the scatter of gradients back into the indexed array.

Gathering is NumPy indexing. Its gradient scatters ``g`` into zeros of the input's shape:

- basic indexing (ints, slices, ``None``, ``...``) never selects an element twice: ``out[idx] = g``
  is one strided assignment;
- boolean masks select each element at most once: ``out[idx] = g`` as well;
- integer arrays may repeat indices, whose gradients must add up. Rows gathered along one axis
  (``x[ids]``, ``take(x, ids, axis)``, e.g. an embedding lookup) are summed by sorting the ids
  and one ``np.add.reduceat`` over the sorted rows; any other integer-array index sums through
  ``np.bincount`` over flat positions. Neither uses the unbuffered ``ufunc.at`` scatter.

The scatter is itself a tape operation whose gradient is the gather again, so indexing is
differentiable to any order.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._common import lift_tensor, record
from ..tensor import Tensor

__all__ = ["getitem", "take"]


def _normalize_index(index):
    """``(index as a tuple of plain items, kind)`` with kind ``"basic"``, ``"mask"``, ``"rows"`` or ``"general"``."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    arrays = []
    for item in items:
        if isinstance(item, Tensor):
            item = item._value
        if item is None or item is Ellipsis or isinstance(item, slice):
            out.append(item)
        elif isinstance(item, (numbers.Integral, np.integer)) and not isinstance(item, (bool, np.bool_)):
            out.append(int(item))
        else:
            arr = np.asarray(item)
            if arr.dtype.kind not in "biu":
                raise IndexError(
                    f"getitem: index arrays must hold integers or booleans. Received: an index of dtype {arr.dtype}"
                )
            out.append(arr)
            arrays.append(arr)
    if not arrays:
        kind = "basic"
    elif all(a.dtype.kind == "b" for a in arrays):
        kind = "mask"
    elif len(out) == 1 and out[0].dtype.kind in "iu":
        kind = "rows"
    else:
        kind = "general"
    return tuple(out), kind


def _scatter_rows(rows: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """``out[i] = sum of rows[j] with ids[j] == i`` for ``out`` of ``n`` rows (sort + reduceat)."""
    out = np.zeros((n,) + rows.shape[1:], dtype=rows.dtype)
    if ids.size == 0:
        return out
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    if starts.size == sorted_ids.size:  # no repeats: one assignment
        out[ids] = rows
    else:
        out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def _scatter_value(g: np.ndarray, index: tuple, kind: str, shape: tuple) -> np.ndarray:
    """Zeros of ``shape`` with ``g`` added at ``index`` (repeated positions summed)."""
    if kind in ("basic", "mask"):
        out = np.zeros(shape, dtype=g.dtype)
        out[index] = g
        return out
    if kind == "rows":
        ids = index[0]
        n = shape[0]
        flat_ids = np.where(ids < 0, ids + n, ids).ravel()
        rows = g.reshape((flat_ids.size,) + tuple(shape[1:]))
        return _scatter_rows(rows, flat_ids, n)
    size = int(np.prod(shape))
    positions = np.arange(size, dtype=np.int64).reshape(shape)[index]
    total = np.bincount(positions.ravel(), weights=g.astype(np.float64, copy=False).ravel(), minlength=size)
    return total.astype(g.dtype, copy=False).reshape(shape)


def _scatter(g: Tensor, index: tuple, kind: str, shape: tuple) -> Tensor:
    """The gradient of ``x[index]``: ``g`` scattered into zeros of ``shape``. Its own gradient gathers."""
    out = _scatter_value(g._value, index, kind, shape)
    return record("scatter", out, (g,), (lambda gg: _gather(gg, index, kind),))


def _gather(x: Tensor, index: tuple, kind: str) -> Tensor:
    try:
        out = x._value[index]
    except IndexError as exc:
        raise IndexError(f"getitem: {exc}. Received: x.shape={x.shape}") from None
    return record("getitem", out, (x,), (lambda g: _scatter(g, index, kind, x.shape),), {"index": _describe_index(index)})


def _describe_index(index: tuple) -> str:
    parts = []
    for item in index:
        if isinstance(item, np.ndarray):
            parts.append(f"array{item.shape}")
        elif isinstance(item, slice):
            parts.append(":".join("" if v is None else str(v) for v in (item.start, item.stop, item.step)).rstrip(":") or ":")
        elif item is Ellipsis:
            parts.append("...")
        else:
            parts.append(str(item))
    return "[" + ", ".join(parts) + "]"


def getitem(x, index) -> Tensor:
    """``x[index]`` with NumPy semantics (basic and advanced indexing; Tensors as index arrays).

    Gradient: ``g`` scattered back into zeros of ``x``'s shape, repeated indices summed.
    """
    x = lift_tensor(x)
    index, kind = _normalize_index(index)
    return _gather(x, index, kind)


def _take_scatter(g: Tensor, ids: np.ndarray, axis: int, shape: tuple) -> Tensor:
    n = shape[axis]
    moved = np.moveaxis(g._value, tuple(range(axis, axis + ids.ndim)), tuple(range(ids.ndim)))
    rows = moved.reshape((ids.size,) + shape[:axis] + shape[axis + 1:])
    flat = np.where(ids < 0, ids + n, ids).ravel()
    out = np.moveaxis(_scatter_rows(rows, flat, n), 0, axis)
    return record("take_scatter", out, (g,), (lambda gg: take(gg, ids, axis),))


def take(x, indices, axis: int = 0) -> Tensor:
    """``np.take(x, indices, axis)``: slices of ``x`` along ``axis`` picked by integer ``indices``.

    Output shape ``x.shape[:axis] + indices.shape + x.shape[axis + 1:]``. Gradient: the slices of
    ``g`` summed back into their rows of ``x`` (sort + ``reduceat``; repeated indices add up).
    """
    x = lift_tensor(x)
    ids = np.asarray(indices._value if isinstance(indices, Tensor) else indices)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"take: expected integer indices. Received: indices of dtype {ids.dtype}")
    if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"take: expected an axis in [-{x.ndim}, {x.ndim}). Received: axis={axis!r}, x.shape={x.shape}")
    ax = int(axis) % x.ndim
    n = x.shape[ax]
    if ids.size and (ids.max() >= n or ids.min() < -n):
        bad = ids[(ids >= n) | (ids < -n)].flat[0]
        raise IndexError(f"take: index {bad} is out of bounds for axis {ax} with size {n}. Received: x.shape={x.shape}")
    out = np.take(x._value, ids, axis=ax)
    return record("take", out, (x,), (lambda g: _take_scatter(g, ids, ax, x.shape),), {"axis": ax})
