"""Keras 3 ``.weights.h5`` files: read into and write from fusenet models (needs ``h5py``).

Layout, as Keras 3's ``model.save_weights("x.weights.h5")`` writes it (HDF5 groups)::

    vars/                                   the model's own variables (none)
    layers/<name>/vars/0, 1, ...            a layer's own variables, in creation order
    layers/<name>/cell/vars/0, 1, 2         LSTM/GRU/SimpleRNN: kernel, recurrent_kernel, bias
    layers/<name>/forward_layer/cell/vars   Bidirectional (and backward_layer/cell/vars)
    layers/<name>/query_dense/vars/0, 1     MultiHeadAttention (key_dense, value_dense, output_dense)
    layers/<name>/layer/...                 TimeDistributed: the wrapped layer

``<name>`` is not the layer's name but its class name in snake case, numbered in layer order per
class: ``dense``, ``dense_1``, ``batch_normalization``, ``conv2d``, ... (Keras addresses layers this
way so that files do not depend on auto-generated names). Variables are in Keras order, which is
fusenet's ``get_weights()`` order (Dense ``[kernel, bias]``, BatchNormalization ``[gamma, beta,
moving_mean, moving_variance]``, ...). Fused layers read and write the layers they replaced;
``Residual`` blocks are inlined (body, shortcut, then the merge layer), as in the functional Keras model.

Reading matches the layers that have weights by that name (class and order) and checks every
array's shape before anything changes (layers without weights need no group, so a Keras
``Activation("relu")`` may stand where the fusenet model has a ``ReLU`` layer); nothing from the
file is executed: only numeric datasets stored in the file itself are
read (no links, external or virtual storage, object or string dtypes, or filters beyond HDF5's
built-in ones). Every problem raises :class:`fusenet.errors.ModelFileError`.
"""

from __future__ import annotations

import os
import re

import numpy as np

from .. import layers as L
from ..errors import ModelFileError
from ._atomic import atomic_write

__all__ = ["load_keras_weights", "save_keras_weights", "keras_weight_paths", "is_hdf5_file"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: HDF5's built-in filters: deflate, shuffle, fletcher32, szip, nbit, scaleoffset (and lzf, shipped with h5py)
_SAFE_FILTERS = {1, 2, 3, 4, 5, 6, 32000}


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Keras .weights.h5 files need the 'h5py' package: pip install h5py "
                          "(the fusenet extra 'h5').") from exc
    return h5py


def keras_snake_case(name: str) -> str:
    """Keras 3's ``naming.to_snake_case``: ``"Conv2DTranspose" -> "conv2d_transpose"``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def is_hdf5_file(path) -> bool:
    """Whether ``path`` starts with the HDF5 signature."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == _HDF5_SIGNATURE
    except OSError:
        return False


# ---------------------------------------------------------------- the layout of a model
def _groups(layer):
    """``[(sub_path, [live weight arrays])]`` of one Keras layer, sub_path "" for its own variables."""
    if isinstance(layer, (L.SimpleRNN, L.LSTM, L.GRU)):
        return [("", []), ("cell", list(layer.weights))]
    if isinstance(layer, L.Bidirectional):
        return [("", []), ("forward_layer/cell", list(layer.forward_layer.weights)),
                ("backward_layer/cell", list(layer.backward_layer.weights))]
    if isinstance(layer, L.MultiHeadAttention):
        out = [("", [])]
        for role in ("query", "key", "value", "output"):
            arrays = [layer._params[f"{role}_kernel"]]
            if layer.use_bias:
                arrays.append(layer._params[f"{role}_bias"])
            out.append((f"{role}_dense", arrays))
        return out
    if isinstance(layer, L.TimeDistributed):
        return [("", [])] + [(f"layer/{p}".rstrip("/"), arrays) for p, arrays in _groups(layer.layer)]
    own = [getattr(layer, "_" + store)[name] for store, name in layer._weight_order]
    out = [("", own)]
    for key, sub in layer._sublayers.items():
        out += [(f"{key}/{p}".rstrip("/"), arrays) for p, arrays in _groups(sub)]
    return out


def _keras_layers(layers):
    """The Keras-visible layers of a fusenet layer list: fused layers and Residual blocks inlined."""
    from ..fusion.base import FusedLayer

    out = []
    for layer in layers:
        if isinstance(layer, L.Input):
            continue
        if isinstance(layer, FusedLayer):
            out += _keras_layers(layer.source_layers)
        elif isinstance(layer, L.Residual):
            out += _keras_layers(layer.body) + _keras_layers(layer.shortcut) + [layer.merge]
        else:
            out.append(layer)
    return out


def keras_weight_paths(model) -> list:
    """``[(group_path, layer, [live arrays])]`` of ``model`` in Keras's file layout and ``get_weights()`` order."""
    counts: dict = {}
    entries = []
    for layer in _keras_layers(model._all_layers()):
        base = keras_snake_case(type(layer).__name__)
        n = counts.get(base)
        counts[base] = 0 if n is None else n + 1
        name = base if n is None else f"{base}_{n + 1}"
        for sub, arrays in _groups(layer):
            entries.append(("/".join(p for p in ("layers", name, sub) if p), layer, arrays))
    live = [a for _, _, arrays in entries for a in arrays]
    if [id(a) for a in live] != [id(w) for w in model.weights]:  # pragma: no cover - a layer kind not mapped above
        raise ValueError(f"{model.describe()}: cannot lay out its weights in Keras's order (an unknown composite layer?).")
    return entries


# ---------------------------------------------------------------- writing
def save_keras_weights(model, filepath, overwrite=True) -> None:
    """Write ``model``'s weights as a Keras 3 ``.weights.h5`` file (atomically)."""
    h5py = _h5py()
    model._require_built("save_weights(format='keras-h5')")
    entries = keras_weight_paths(model)

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.create_group("vars")
            for path, _, arrays in entries:
                group = f.require_group(f"{path}/vars")
                for i, a in enumerate(arrays):
                    group.create_dataset(str(i), data=np.asarray(a))

    atomic_write(os.fspath(filepath), write, overwrite=overwrite, owner=f"{model.describe()}.save_weights")


# ---------------------------------------------------------------- reading
def _check_dataset(h5py, group, key, path, where):
    link = group.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise ModelFileError(f"{path!r}: {where} is a {type(link).__name__}, not data stored in the file. Refused.")
    ds = group[key]
    if not isinstance(ds, h5py.Dataset):
        raise ModelFileError(f"{path!r}: {where} is not a dataset.")
    if ds.is_virtual or ds.external:
        raise ModelFileError(f"{path!r}: {where} reads its data from other files (virtual or external storage). Refused.")
    plist = ds.id.get_create_plist()
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    if filters - _SAFE_FILTERS:
        raise ModelFileError(f"{path!r}: {where} uses the HDF5 filter(s) {sorted(filters - _SAFE_FILTERS)}, which are not "
                             "built in. Refused.")
    if ds.dtype.kind != "f" or ds.dtype.fields is not None or ds.dtype.subdtype is not None:
        raise ModelFileError(f"{path!r}: {where} has dtype {ds.dtype}; weights must be floats.")
    return ds


def _read_group(h5py, f, group_path, expected, path, layer):
    vars_path = f"{group_path}/vars"
    node = f
    for part in vars_path.split("/"):
        link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
        if link is None:
            known = sorted(f["layers"].keys()) if isinstance(f.get("layers", getlink=True), h5py.HardLink) else []
            raise ModelFileError(
                f"{path!r}: no group {vars_path!r} for {layer.describe()} (Keras names layers by class and order). "
                f"Layers in the file: {known[:40]}"
            )
        if not isinstance(link, h5py.HardLink):
            raise ModelFileError(f"{path!r}: {vars_path!r} goes through a {type(link).__name__}. Refused.")
        node = node[part]
    if not isinstance(node, h5py.Group):
        raise ModelFileError(f"{path!r}: {vars_path!r} is not a group.")
    keys = sorted(node.keys(), key=lambda k: (len(k), k))
    if keys != [str(i) for i in range(len(expected))]:
        raise ModelFileError(
            f"{path!r}: {vars_path!r} holds the variables {keys}, but {layer.describe()} expects {len(expected)} "
            f"(shapes {[tuple(a.shape) for a in expected]})."
        )
    arrays = []
    for i, ref in enumerate(expected):
        where = f"{vars_path}/{i}"
        ds = _check_dataset(h5py, node, str(i), path, where)
        if tuple(ds.shape) != tuple(ref.shape):
            raise ModelFileError(
                f"{path!r}: {where} has shape {tuple(ds.shape)}, but weight {i} of {layer.describe()} has shape "
                f"{tuple(ref.shape)}."
            )
        value = np.asarray(ds[()])
        if not np.all(np.isfinite(value)):
            raise ModelFileError(f"{path!r}: {where} holds NaN or infinite values.")
        arrays.append(value.astype(ref.dtype))
    return arrays


def load_keras_weights(model, filepath) -> None:
    """Load a Keras 3 ``.weights.h5`` file into ``model`` (by layer class, order and shape).

    Every array is read and checked before any weight changes; any problem (not an HDF5 file,
    truncated, missing or extra variables, wrong shapes or dtypes, links or external data) raises
    :class:`~fusenet.errors.ModelFileError` and leaves the model unchanged.
    """
    h5py = _h5py()
    model._require_built("load_weights()")
    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise ModelFileError(f"No such file: {path!r}." if not os.path.exists(path) else f"{path!r} is not a file.")
    if not is_hdf5_file(path):
        raise ModelFileError(f"{path!r} is not a Keras .weights.h5 file: it does not start with the HDF5 signature.")
    entries = keras_weight_paths(model)
    try:
        with h5py.File(path, "r") as f:
            values = []
            for group_path, layer, arrays in entries:
                if arrays:  # layers without weights need no group (a Keras model may use other classes there)
                    values += _read_group(h5py, f, group_path, arrays, path, layer)
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path!r}: could not read the Keras weights file (truncated or corrupt?): "
                             f"{type(exc).__name__}: {exc}") from exc
    model.set_weights(values)
