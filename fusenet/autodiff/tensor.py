"""The values a :class:`~fusenet.autodiff.GradientTape` follows: :class:`Tensor` and :class:`Variable`.

A :class:`Tensor` is a thin wrapper around one NumPy ``ndarray`` (no copy): ``t.numpy()`` is that
very array, ``t.shape``/``t.dtype``/``t.ndim``/``t.size`` are its own. Tensors are immutable by
convention: every operation returns a new Tensor, and an array wrapped by a Tensor that a tape
recorded must not be written to until the gradient is computed.

Dtypes follow fusenet: NumPy arrays keep their dtype (float32, float64, and integer or boolean
arrays for indices and masks); Python numbers and lists become float32 unless ``dtype=`` says
otherwise (``Tensor([1, 2], dtype="float64")``). Results of operations have NumPy's result dtype
(NEP 50: a Python scalar never widens a float32 Tensor).

A :class:`Variable` is a trainable array: a Tensor whose value may change in place
(:meth:`Variable.assign`), watched automatically by every recording tape that sees it used
(``watch_accessed_variables=True``). ``Variable(arr)`` on a float ndarray shares its memory, so a
Variable can stand for a layer parameter that an optimizer updates in place.

Operator overloading: ``a + b``, ``a - b``, ``a * b``, ``a / b``, ``a ** b``, ``a @ b``, ``-a``,
``abs(a)``, ``a[idx]``, ``a.T`` record operations (either operand may be a NumPy array or a Python
number; ``ndarray + Tensor`` works too, through ``__array_ufunc__``). Comparisons (``<``, ``==``,
...) return plain boolean arrays: they have no gradient. NumPy ufuncs with a tape operation
(``np.exp(t)``, ``np.maximum(t, 0)``, ...) record it; every other NumPy function sees the
Tensor as its array (``np.asarray(t)``) and returns a plain array, which is a constant to tapes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Tensor", "Variable", "as_tensor", "constant", "DEFAULT_FLOAT"]

#: dtype of Tensors made from Python numbers and lists (fusenet's default float)
DEFAULT_FLOAT = np.dtype("float32")

_NUMERIC_KINDS = "biuf"

#: ``[n]``: the number of Variable assignments so far (a Variable's ``_version`` is the count at its
#: last assignment, so a node recorded at count ``c`` used a Variable since assigned iff its
#: ``_version > c``; nodes skip the check while the count has not moved)
ASSIGNMENTS = [0]


def _to_array(value, dtype, owner: str) -> np.ndarray:
    """``value`` as an ndarray: ndarrays keep their dtype (no copy), Python data becomes float32."""
    if isinstance(value, Tensor):
        arr = value._value
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except ValueError as exc:
            raise ValueError(f"{owner}: expected a rectangular numeric array. Received a ragged sequence: {exc}") from None
        if dtype is None and arr.dtype.kind in "iuf" and not isinstance(value, np.generic):
            arr = arr.astype(DEFAULT_FLOAT)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(
            f"{owner}: expected a numeric value (bool, int or float). "
            f"Received: an array of dtype {arr.dtype} with shape {arr.shape}"
        )
    if dtype is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"{owner}: expected dtype to be a NumPy dtype such as 'float64'. Received: dtype={dtype!r}") from exc
        if dt.kind not in _NUMERIC_KINDS:
            raise TypeError(f"{owner}: expected a numeric dtype. Received: dtype={dtype!r}")
        if arr.dtype != dt:
            arr = arr.astype(dt)
    return arr


_new_object = object.__new__


def _wrap(value) -> "Tensor":
    """A Tensor around an operation's result (no checks; NumPy scalars become 0-d arrays). A plain
    function (``Tensor._wrap`` is this one): it runs for every recorded value."""
    t = _new_object(Tensor)
    t._value = value if type(value) is np.ndarray else np.asarray(value)
    t.name = None
    return t


def _plain(x):
    """The array behind a Tensor; anything else unchanged."""
    return x._value if isinstance(x, Tensor) else x


class Tensor:
    """An immutable n-dimensional array that gradient tapes can follow.

    Args:
        value: an ndarray (wrapped without copy, dtype kept), a Tensor, or Python numbers/lists
            (float32 unless ``dtype`` is given).
        dtype: optional dtype to cast to (a copy only when the dtype differs).
        name: optional name, shown by :meth:`~fusenet.autodiff.Graph.to_dot`.
    """

    __slots__ = ("_value", "name")
    # ndarray (op) Tensor defers to Tensor.__array_ufunc__; this keeps NumPy from broadcasting
    # an object array over the Tensor when it calls reflected operators.
    __array_priority__ = 1000

    def __init__(self, value, dtype=None, name=None):
        self._value = _to_array(value, dtype, type(self).__name__)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: expected name to be a string or None. Received: name={name!r}")
        self.name = name

    # ------------------------------------------------------------ array facts
    @property
    def shape(self) -> tuple:
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        return self._value.dtype

    @property
    def ndim(self) -> int:
        return self._value.ndim

    @property
    def size(self) -> int:
        return self._value.size

    def numpy(self) -> np.ndarray:
        """The wrapped ndarray itself (not a copy): treat it as read-only while a tape holds it."""
        return self._value

    def item(self):
        """The value of a one-element Tensor as a Python number."""
        return self._value.item()

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self._value, dtype=dtype, copy=True)
        if dtype is None or np.dtype(dtype) == self._value.dtype:
            return self._value
        if copy is False:
            raise ValueError(f"Tensor.__array__: converting dtype {self.dtype} to {np.dtype(dtype)} needs a copy, but copy=False")
        return self._value.astype(dtype)

    def __len__(self) -> int:
        if self._value.ndim == 0:
            raise TypeError("len() of a 0-d Tensor")
        return self._value.shape[0]

    def __iter__(self):
        if self._value.ndim == 0:
            raise TypeError("iteration over a 0-d Tensor")
        for i in range(self._value.shape[0]):
            yield self[i]

    def __bool__(self) -> bool:
        return bool(self._value)

    def __float__(self) -> float:
        return float(self._value)

    def __int__(self) -> int:
        return int(self._value)

    def __index__(self) -> int:
        if self._value.dtype.kind not in "iu" or self._value.ndim != 0:
            raise TypeError(f"only 0-d integer Tensors can be used as an index. Received: dtype={self.dtype}, shape={self.shape}")
        return int(self._value)

    __hash__ = object.__hash__

    def __repr__(self):
        body = np.array2string(self._value, precision=4, threshold=20, separator=", ")
        name = f", name={self.name!r}" if self.name else ""
        return f"<{type(self).__name__} shape={self.shape} dtype={self.dtype}{name} value={body}>"

    # ------------------------------------------------------------ arithmetic (recorded)
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.subtract(self, other)

    def __rsub__(self, other):
        return _ops.subtract(other, self)

    def __mul__(self, other):
        return _ops.multiply(self, other)

    def __rmul__(self, other):
        return _ops.multiply(other, self)

    def __truediv__(self, other):
        return _ops.divide(self, other)

    def __rtruediv__(self, other):
        return _ops.divide(other, self)

    def __pow__(self, other):
        return _ops.power(self, other)

    def __rpow__(self, other):
        return _ops.power(other, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    def __setitem__(self, index, value):
        raise TypeError(
            f"{type(self).__name__} does not support item assignment: Tensors are immutable. "
            "Build the new value with where(), concatenate() or pad(), or use Variable.assign()."
        )

    # ------------------------------------------------------------ comparisons (plain arrays)
    def __lt__(self, other):
        return self._value < _plain(other)

    def __le__(self, other):
        return self._value <= _plain(other)

    def __gt__(self, other):
        return self._value > _plain(other)

    def __ge__(self, other):
        return self._value >= _plain(other)

    def __eq__(self, other):
        return self._value == _plain(other)

    def __ne__(self, other):
        return self._value != _plain(other)

    # ------------------------------------------------------------ methods (recorded)
    @property
    def T(self) -> "Tensor":
        """The transpose (all axes reversed)."""
        return _ops.transpose(self)

    def reshape(self, *shape) -> "Tensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.reshape(self, shape)

    def transpose(self, *axes) -> "Tensor":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.transpose(self, axes or None)

    def sum(self, axis=None, keepdims=False) -> "Tensor":
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False) -> "Tensor":
        return _ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False) -> "Tensor":
        return _ops.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False) -> "Tensor":
        return _ops.min(self, axis=axis, keepdims=keepdims)

    def astype(self, dtype) -> "Tensor":
        return _ops.cast(self, dtype)

    # ------------------------------------------------------------ NumPy interoperation
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        op = _ops.UFUNC_OPS.get(ufunc) if method == "__call__" and not kwargs else None
        if op is not None:
            return op(*inputs)
        # no tape operation: compute on the plain arrays (a constant to every tape)
        inputs = tuple(_plain(x) for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(x) for x in kwargs["out"])
        return getattr(ufunc, method)(*inputs, **kwargs)


#: ``Tensor._wrap(value)``: a Tensor around an operation's result, without checks (see :func:`_wrap`)
Tensor._wrap = staticmethod(_wrap)


class Variable(Tensor):
    """A trainable array: a :class:`Tensor` whose value can change in place.

    ``Variable(arr)`` on a float ndarray shares ``arr``'s memory (``v.numpy() is arr``), so the
    Variable follows in-place updates of ``arr`` (e.g. a layer parameter updated by an
    optimizer) and :meth:`assign` writes into ``arr``. Other values (Python numbers, lists,
    integer arrays) are copied into a new float array (float32 unless ``dtype`` is given).

    Recording tapes watch trainable Variables automatically when an operation uses them
    (``GradientTape(watch_accessed_variables=True)``, the default). Assigning a Variable that a
    tape used before its gradient is computed makes that gradient raise (it would read the new
    value), as PyTorch's version counters do.

    Args:
        value: the initial value.
        dtype: a float dtype (default: the ndarray's own float dtype, else float32).
        trainable: whether tapes watch it automatically.
        name: optional name.
    """

    __slots__ = ("trainable", "_version")

    def __init__(self, value, dtype=None, trainable=True, name=None):
        owner = "Variable"
        arr = value._value if isinstance(value, Tensor) else value
        if dtype is not None:
            dt = np.dtype(dtype) if not isinstance(dtype, np.dtype) else dtype
            if dt.kind != "f":
                raise TypeError(f"{owner}: expected a float dtype such as 'float32' or 'float64'. Received: dtype={dtype!r}")
        if not (isinstance(arr, np.ndarray) and arr.dtype.kind == "f"):
            arr = _to_array(arr, None, owner)
            if arr.dtype.kind != "f":
                arr = arr.astype(DEFAULT_FLOAT if dtype is None else dtype)
        super().__init__(arr, dtype=dtype, name=name)
        self.trainable = bool(trainable)
        self._version = 0

    def assign(self, value) -> "Variable":
        """Write ``value`` (broadcast to this Variable's shape) into its array, in place."""
        value = np.asarray(_plain(value))
        try:
            np.copyto(self._value, np.broadcast_to(value, self._value.shape), casting="same_kind")
        except ValueError:
            raise ValueError(
                f"Variable.assign: expected a value that broadcasts to the variable's shape {self.shape}. "
                f"Received: value.shape={value.shape}"
            ) from None
        ASSIGNMENTS[0] += 1
        self._version = ASSIGNMENTS[0]
        return self

    def assign_add(self, delta) -> "Variable":
        """``self += delta`` in place."""
        return self.assign(self._value + np.asarray(_plain(delta)))

    def assign_sub(self, delta) -> "Variable":
        """``self -= delta`` in place."""
        return self.assign(self._value - np.asarray(_plain(delta)))

    def __repr__(self):
        body = np.array2string(self._value, precision=4, threshold=20, separator=", ")
        name = f" name={self.name!r}" if self.name else ""
        return f"<Variable{name} shape={self.shape} dtype={self.dtype} trainable={self.trainable} value={body}>"


def as_tensor(value, dtype=None) -> Tensor:
    """``value`` itself when it is a Tensor (of ``dtype`` when given), else a new constant Tensor."""
    if isinstance(value, Tensor) and (dtype is None or value.dtype == np.dtype(dtype)):
        return value
    if isinstance(value, Tensor):
        return _ops.cast(value, dtype)
    return Tensor(value, dtype=dtype)


def constant(value, dtype=None, name=None) -> Tensor:
    """A new Tensor that no tape watches (``Tensor(value, dtype, name)``)."""
    return Tensor(value, dtype=dtype, name=name)


# The operations need Tensor defined above; they are imported last (no cycle at run time).
from . import ops as _ops  # noqa: E402
