"""Products: batched :func:`matmul` and :func:`einsum`.

``matmul`` follows ``np.matmul``: the last two axes multiply, leading (batch) axes broadcast,
a 1-D operand is a row (left) or column (right) vector. Gradients ``g @ b^T`` and ``a^T @ g``
are summed over broadcast batch axes.

``einsum`` takes NumPy's subscripts (explicit ``"ij,jk->ik"``, implicit ``"ij,jk"``, ellipsis
``"...ij,...jk->...ik"``). The gradient of operand ``i`` is another einsum of the upstream
gradient with the other operands, written to operand ``i``'s subscripts; labels that appear only
in operand ``i`` are broadcast back, size-1 (broadcast) axes are summed, and a label repeated
within one operand (a diagonal, ``"ii->i"``) is handled with an identity matrix.
"""

from __future__ import annotations

import string
from collections import Counter

import numpy as np

from ._common import lift_tensor, record, sum_to
from ..tensor import Tensor
from . import shape as sh

__all__ = ["matmul", "einsum"]

_LETTERS = string.ascii_letters


def _matmul2(a: Tensor, b: Tensor) -> Tensor:
    out = np.matmul(a._value, b._value)
    return record("matmul", out, (a, b), (
        lambda g: sum_to(matmul(g, sh.swapaxes(b, -1, -2)), a),
        lambda g: sum_to(matmul(sh.swapaxes(a, -1, -2), g), b),
    ))


def matmul(a, b) -> Tensor:
    """Matrix product ``a @ b`` with NumPy's batching and vector rules.

    Shapes: ``(..., m, n) @ (..., n, p) -> (..., m, p)`` (batch axes broadcast); a 1-D ``a`` of
    shape ``(n,)`` acts as ``(1, n)``, a 1-D ``b`` as ``(n, 1)``, and the added axis is removed.
    """
    a, b = lift_tensor(a), lift_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            "matmul: expected operands of rank 1 or more (use multiply for scalars). "
            f"Received: a.shape={a.shape}, b.shape={b.shape}"
        )
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if k_a != k_b:
        which = "second-to-last" if b.ndim >= 2 else "only"
        raise ValueError(
            f"matmul: the last axis of a (size {k_a}) must match the {which} axis of b (size {k_b}). "
            f"Received: a.shape={a.shape}, b.shape={b.shape}"
        )
    if a.ndim > 2 and b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(
                f"matmul: the batch axes {a.shape[:-2]} and {b.shape[:-2]} do not broadcast together. "
                f"Received: a.shape={a.shape}, b.shape={b.shape}"
            ) from None
    if a.ndim == 1 and b.ndim == 1:
        return sh.reshape(_matmul2(sh.reshape(a, (1, k_a)), sh.reshape(b, (k_a, 1))), ())
    if a.ndim == 1:
        r = _matmul2(sh.reshape(a, (1, k_a)), b)
        return sh.reshape(r, r.shape[:-2] + r.shape[-1:])
    if b.ndim == 1:
        r = _matmul2(a, sh.reshape(b, (k_a, 1)))
        return sh.reshape(r, r.shape[:-1])
    return _matmul2(a, b)


# ---------------------------------------------------------------- einsum
def _parse(subscripts: str, ndims: list) -> tuple:
    """``(input subscripts, output subscripts)`` with every ellipsis replaced by letters."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: expected subscripts to be a string. Received: {subscripts!r}")
    s = subscripts.replace(" ", "")
    if s.count("->") > 1:
        raise ValueError(f"einsum: expected at most one '->'. Received: {subscripts!r}")
    lhs, rhs = s.split("->") if "->" in s else (s, None)
    ins = lhs.split(",")
    if len(ins) != len(ndims):
        raise ValueError(
            f"einsum: the subscripts name {len(ins)} operands, but {len(ndims)} were given. Received: {subscripts!r}"
        )
    for part in ins + ([rhs] if rhs is not None else []):
        rest = part.replace("...", "")
        if part.count("...") > 1 or any(c not in _LETTERS for c in rest):
            raise ValueError(f"einsum: invalid subscripts {subscripts!r}: use letters and at most one '...' per operand.")
    used = {c for c in s if c in _LETTERS}
    free = [c for c in _LETTERS if c not in used]
    ell_rank = 0
    for sub, nd in zip(ins, ndims):
        if "..." in sub:
            k = nd - (len(sub) - 3)
            if k < 0:
                raise ValueError(f"einsum: operand subscripts {sub!r} name more axes than the operand's {nd}.")
            ell_rank = max(ell_rank, k)
    ell = "".join(free[:ell_rank])
    expanded = []
    for sub, nd in zip(ins, ndims):
        if "..." in sub:
            head, tail = sub.split("...")
            k = nd - len(head) - len(tail)
            sub = head + ell[ell_rank - k:] + tail
        if len(sub) != nd:
            raise ValueError(
                f"einsum: operand subscripts {sub!r} name {len(sub)} axes, but the operand has {nd}. "
                f"Received: {subscripts!r}"
            )
        expanded.append(sub)
    if rhs is None:
        counts = Counter(c for sub in ins for c in sub if c in _LETTERS)
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1))
    else:
        out = rhs.replace("...", ell)
        missing = [c for c in out if c not in "".join(expanded)]
        if missing or len(set(out)) != len(out):
            raise ValueError(f"einsum: invalid output subscripts in {subscripts!r}.")
    return expanded, out


def _einsum_value(spec: str, values):
    return np.einsum(spec, *values, optimize=len(values) > 1)


def _einsum(subs: list, out: str, operands: list) -> Tensor:
    spec = ",".join(subs) + "->" + out
    try:
        value = _einsum_value(spec, [t._value for t in operands])
    except ValueError as exc:
        raise ValueError(f"einsum: {exc}. Received: {spec!r} with shapes {[t.shape for t in operands]}") from None

    def vjp(g, needs):
        return tuple(_einsum_grad(g, operands, subs, out, i) if need else None for i, need in enumerate(needs))

    return record("einsum", value, tuple(operands), vjp, {"subscripts": spec})


def _einsum_grad(g: Tensor, operands: list, subs: list, out: str, i: int) -> Tensor:
    sub_i, shape_i = subs[i], operands[i].shape
    sizes: dict = {}
    for sub, t in zip(subs, operands):
        for c, n in zip(sub, t.shape):
            sizes[c] = max(sizes.get(c, 1), n)
    used = set("".join(subs) + out)
    fresh = (c for c in _LETTERS if c not in used)
    target, extra_subs, extra_ops, seen = [], [], [], set()
    for c in sub_i:
        if c in seen:  # a diagonal: the gradient lands on it through an identity matrix
            nc = next(fresh)
            sizes[nc] = sizes[c]
            extra_subs.append(c + nc)
            extra_ops.append(Tensor._wrap(np.eye(sizes[c], dtype=g.dtype)))
            target.append(nc)
        else:
            seen.add(c)
            target.append(c)
    others = [(s, t) for j, (s, t) in enumerate(zip(subs, operands)) if j != i]
    available = set(out) | set("".join(s for s, _ in others)) | set("".join(extra_subs))
    kept = [c for pos, c in enumerate(target) if c in available and not (shape_i[pos] == 1 and sizes[c] > 1)]
    r = _einsum([out] + [s for s, _ in others] + extra_subs, "".join(kept), [g] + [t for _, t in others] + extra_ops)
    dims = iter(r.shape)
    kept_set = set(kept)
    r = sh.reshape(r, tuple(next(dims) if c in kept_set else 1 for c in target))
    if r.shape != shape_i:
        r = sh.broadcast_to(r, shape_i)
    return r


def einsum(subscripts: str, *operands) -> Tensor:
    """Einstein summation over the operands (NumPy subscripts; see the module docstring)."""
    ops = [lift_tensor(t) for t in operands]
    if not ops:
        raise ValueError("einsum: expected at least one operand.")
    subs, out = _parse(subscripts, [t.ndim for t in ops])
    return _einsum(subs, out, ops)
