"""Argument checks shared by the convolution and pooling layers (Keras names and messages)."""

from __future__ import annotations

import numbers

from ..utils import check_positive_int, normalize_tuple
from ._conv_ops import ConvGeometry, conv_geometry, conv_padding

__all__ = [
    "owner_name",
    "normalize_padding",
    "normalize_data_format",
    "normalize_sizes",
    "normalize_output_padding",
    "check_strides_dilation",
    "check_groups",
    "checked_geometry",
    "spatial_output_sizes",
]


def owner_name(cls_name: str, kwargs: dict) -> str:
    """``"Conv2D"`` or ``"Conv2D(name='c1')"``: who raises, before the layer has a name."""
    name = kwargs.get("name")
    return f"{cls_name}(name={name!r})" if name else cls_name


def normalize_padding(value, allowed, owner: str) -> str:
    """``value`` lower-cased if it is one of ``allowed``, else ``ValueError`` listing them."""
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"{owner}: expected padding to be one of {list(allowed)}. Received: padding={value!r}")
    return value.lower()


def normalize_data_format(value, owner: str) -> str:
    """Only channels-last is supported (fusenet's layout): ``None`` or ``"channels_last"``."""
    if value is None or value == "channels_last":
        return "channels_last"
    raise ValueError(
        f"{owner}: fusenet is channels-last only; expected data_format to be 'channels_last' or None. "
        f"Received: data_format={value!r}"
    )


def normalize_sizes(value, rank: int, name: str, owner: str) -> tuple:
    """An int or a tuple of ``rank`` positive ints (``kernel_size``, ``strides``, ``dilation_rate``, ``pool_size``)."""
    if isinstance(value, list):
        value = tuple(value)
    return normalize_tuple(value, rank, name, owner)


def normalize_output_padding(value, rank: int, strides, owner: str):
    """``None`` or a tuple of ``rank`` non-negative ints, each smaller than its stride (Keras)."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value),) * rank
    try:
        value = tuple(value)
    except TypeError as exc:
        raise TypeError(f"{owner}: expected output_padding to be None, an int or a tuple of {rank} ints. "
                        f"Received: output_padding={value!r}") from exc
    if len(value) != rank or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ValueError(f"{owner}: expected output_padding to be None, an int or a tuple of {rank} non-negative ints. "
                         f"Received: output_padding={value!r}")
    value = tuple(int(v) for v in value)
    if any(op >= s for op, s in zip(value, strides)):
        raise ValueError(f"{owner}: expected every output_padding to be smaller than its stride. "
                         f"Received: output_padding={value}, strides={tuple(strides)}")
    return value


def check_strides_dilation(strides, dilations, owner: str) -> None:
    """Keras forbids ``strides > 1`` together with ``dilation_rate > 1``."""
    if max(strides) > 1 and max(dilations) > 1:
        raise ValueError(
            f"{owner}: strides > 1 is not supported together with dilation_rate > 1. "
            f"Received: strides={tuple(strides)} and dilation_rate={tuple(dilations)}"
        )


def check_groups(groups, filters, owner: str) -> int:
    groups = check_positive_int(groups, "groups", owner)
    if filters is not None and filters % groups:
        raise ValueError(f"{owner}: the number of filters must be divisible by groups. "
                         f"Received: groups={groups}, filters={filters}")
    return groups


def _too_small(layer, a, n, k, d, padding, input_shape, what):
    _, before, after = conv_padding(n, k, 1, d, padding)
    eff = (k - 1) * d + 1
    extent = f" (dilated extent {eff})" if d > 1 else ""
    raise ValueError(
        f"{layer.describe()}: the {what} is larger than the padded input along spatial axis {a}: "
        f"{what} size {k}{extent} > padded input size {n + before + after} "
        f"(input {n} + padding {before}+{after}, padding='{padding}'). Received input shape {tuple(input_shape)}."
    )


def spatial_output_sizes(layer, input_shape, kernel_sizes, strides, dilations, padding, what="kernel") -> tuple:
    """Output spatial sizes (``None`` stays ``None``); ``ValueError`` naming ``layer`` when the
    (dilated) ``what`` does not fit into the padded input."""
    spatial = tuple(input_shape[1:-1])
    outs = []
    for a, (n, k, s, d) in enumerate(zip(spatial, kernel_sizes, strides, dilations)):
        if n is None:
            outs.append(None)
            continue
        out, _, _ = conv_padding(n, k, s, d, padding)
        if out <= 0:
            _too_small(layer, a, n, k, d, padding, input_shape, what)
        outs.append(out)
    return tuple(outs)


def checked_geometry(layer, input_shape, kernel_sizes, strides, dilations, padding, what="kernel") -> ConvGeometry:
    """The :class:`ConvGeometry` for a concrete input shape, validated as :func:`spatial_output_sizes`."""
    spatial_output_sizes(layer, input_shape, kernel_sizes, strides, dilations, padding, what)
    return conv_geometry(tuple(input_shape[1:-1]), kernel_sizes, strides, dilations, padding)
