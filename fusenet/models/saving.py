"""Saving and loading models: one zip file, written atomically, read without executing anything.

File layout (a plain zip archive)::

    config.json            {"format": "fusenet.model", "format_version": 1, "fusenet_version": ...,
                            "model": {"class_name": "Sequential", "config": {...}},
                            "compile": {"optimizer": ..., "loss": ..., "metrics": [...], ...} or null,
                            "weights": [{"entry", "layer", "name", "shape", "dtype"}, ...],
                            "optimizer_state": {... arrays as {"__ndarray__": entry, "shape", "dtype"}} or null}
    weights/00000.npy      one .npy entry per weight, in get_weights() order (stored, not compressed)
    optimizer/00000.npy    the optimizer's state arrays (moments, accumulators, ...)

``save_weights`` writes the same container with ``"format": "fusenet.weights"`` and no
architecture; a training-state file (for :class:`~fusenet.callbacks.BackupAndRestore`) adds the
random states and the number of finished epochs.

Writing is atomic: the archive goes to a temporary file in the target's folder, is flushed to
disk, then ``os.replace``-d over the target; an exception while writing leaves the previous file
untouched and removes the temporary one.

Reading never executes code from the file: no pickle (every ``.npy`` header is parsed and
checked before ``np.load(..., allow_pickle=False)``; object dtypes are refused), layers,
optimizers, losses and metrics are built only from fusenet's registries (plus classes the user
registered), and every entry is checked (names, counts, shapes, dtypes, sizes) before anything
changes. Any problem with a file -- missing, truncated, corrupt, inconsistent or hostile --
raises :class:`fusenet.errors.ModelFileError`.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import re
import sys
import zipfile

import numpy as np

from .._atomic import atomic_write
from ..errors import ModelFileError

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "save_training_state",
           "load_training_state", "register_model_class", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_CONFIG = "config.json"
_MAX_JSON_BYTES = 64 * 1024 * 1024
_MAX_ENTRIES = 1_000_000
_MAX_NPY_HEADER = 65536
_DATE = (1980, 1, 1, 0, 0, 0)
_ALLOWED_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                   "uint64", "bool"}
_ENTRY_NAME = re.compile(r"(weights|optimizer)/\d{5,9}\.npy")

#: model classes a file may name (fusenet's, plus register_model_class)
_MODEL_CLASSES: dict = {}


def register_model_class(cls: type) -> type:
    """Let saved files name the model class ``cls`` (a subclass of :class:`fusenet.models.Model`)."""
    from .model import Model

    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise TypeError(f"register_model_class: expected a subclass of fusenet.models.Model. Received: {cls!r}")
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


def _version() -> str:
    pkg = sys.modules.get("fusenet")
    return str(getattr(pkg, "__version__", "unknown"))


# ---------------------------------------------------------------- writing
def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _atomic_write(filepath, entries_fn, overwrite: bool) -> None:
    """Write the zip produced by ``entries_fn(add)`` to ``filepath`` atomically
    (:func:`fusenet._atomic.atomic_write`: a temporary file next to the target, fsync-ed, then
    ``os.replace``; on any exception the target is untouched and the temporary file removed).

    ``entries_fn`` calls ``add(name, data_bytes, compress)`` for every entry.
    """
    def write_zip(tmp):
        with open(tmp, "wb") as f, zipfile.ZipFile(f, "w") as zf:
            def add(name, data, compress=False):
                info = zipfile.ZipInfo(name, date_time=_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)

            entries_fn(add)

    atomic_write(filepath, write_zip, overwrite=overwrite, owner="save")


def _weight_manifest(model):
    """``(manifest, arrays)``: one manifest entry per weight in get_weights() order."""
    manifest, arrays = [], []
    for index, layer in enumerate(model._all_layers()):
        names = {id(a): k for k, a in list(layer.params.items()) + list(layer.state.items())}
        for w in layer.weights:
            entry = f"weights/{len(arrays):05d}.npy"
            manifest.append({"entry": entry, "layer": layer.name, "layer_index": index,
                             "name": names.get(id(w), f"weight_{len(arrays)}"), "shape": list(w.shape),
                             "dtype": w.dtype.name})
            arrays.append(w)
    return manifest, arrays


def _encode_state(value, arrays: list):
    """A JSON-safe copy of ``value`` with every ndarray replaced by a reference to an ``optimizer/`` entry."""
    if isinstance(value, np.ndarray):
        entry = f"optimizer/{len(arrays):05d}.npy"
        arrays.append((entry, value))
        return {"__ndarray__": entry, "shape": list(value.shape), "dtype": value.dtype.name}
    if isinstance(value, dict):
        return {str(k): _encode_state(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_state(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _model_document(model, fmt: str):
    manifest, arrays = _weight_manifest(model)
    doc = {"format": fmt, "format_version": FORMAT_VERSION, "fusenet_version": _version(), "weights": manifest}
    opt_arrays: list = []
    if fmt != "fusenet.weights":
        doc["model"] = {"class_name": type(model).__name__, "config": model.get_config()}
        doc["compile"] = model.get_compile_config()
        optimizer = getattr(model, "optimizer", None)
        state = optimizer.get_state() if model.compiled and callable(getattr(optimizer, "get_state", None)) else None
        doc["optimizer_state"] = None if state is None else _encode_state(state, opt_arrays)
    return doc, arrays, opt_arrays


def _write_document(filepath, doc, arrays, opt_arrays, overwrite=True) -> None:
    text = json.dumps(doc, indent=1, allow_nan=True)

    def entries(add):
        add(_CONFIG, text.encode("utf-8"), compress=True)
        for item, array in zip(doc["weights"], arrays):
            add(item["entry"], _npy_bytes(array))
        for entry, array in opt_arrays:
            add(entry, _npy_bytes(array))

    _atomic_write(filepath, entries, overwrite)


def save_model(model, filepath, overwrite=True) -> None:
    """Write ``model`` to ``filepath``: architecture, compile settings, weights and optimizer state.

    Atomic (see the module docstring). ``overwrite=False`` raises ``FileExistsError`` when the
    file exists.
    """
    if model.__class__.__name__ not in _MODEL_CLASSES:
        raise TypeError(
            f"save_model: {type(model).__name__} is not a registered model class; "
            f"known: {sorted(_MODEL_CLASSES)} (see fusenet.models.saving.register_model_class)."
        )
    doc, arrays, opt_arrays = _model_document(model, "fusenet.model")
    _write_document(filepath, doc, arrays, opt_arrays, overwrite)


def save_weights(model, filepath, overwrite=True) -> None:
    """Write only the weights of ``model`` (the same zip container, ``"format": "fusenet.weights"``).

    A path ending in ``.npz`` gets the same file, which ``np.load`` also reads.
    """
    doc, arrays, _ = _model_document(model, "fusenet.weights")
    _write_document(filepath, doc, arrays, [], overwrite)


# ---------------------------------------------------------------- reading
class _Archive:
    """A zip file opened for checked reading; every problem raises ModelFileError."""

    def __init__(self, filepath):
        self.path = os.fspath(filepath)
        if not os.path.exists(self.path):
            raise ModelFileError(f"No such file: {self.path!r}.")
        if os.path.isdir(self.path):
            raise ModelFileError(f"{self.path!r} is a directory, not a fusenet model file.")
        if not zipfile.is_zipfile(self.path):
            raise ModelFileError(f"{self.path!r} is not a fusenet model file: not a zip archive (truncated or corrupt?).")
        self.zf = zipfile.ZipFile(self.path, "r")
        infos = self.zf.infolist()
        if len(infos) > _MAX_ENTRIES:
            self.close()
            raise ModelFileError(f"{self.path!r}: too many entries ({len(infos)}).")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            self.close()
            raise ModelFileError(f"{self.path!r}: the archive has duplicate entry names.")
        self.infos = {i.filename: i for i in infos}

    def close(self):
        self.zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has(self, name) -> bool:
        return name in self.infos

    def _info(self, name):
        info = self.infos.get(name)
        if info is None:
            raise ModelFileError(f"{self.path!r}: the entry {name!r} is missing.")
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{self.path!r}: the entry {name!r} is encrypted.")
        return info

    def read_json(self, name=_CONFIG):
        info = self._info(name)
        if info.file_size > _MAX_JSON_BYTES:
            raise ModelFileError(f"{self.path!r}: {name} is too large ({info.file_size} bytes).")
        data = self.zf.read(name)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ModelFileError(f"{self.path!r}: {name} is not valid JSON: {exc}") from exc

    def read_array(self, name, shape, dtype) -> np.ndarray:
        """The ``.npy`` entry ``name``, which must hold an array of exactly ``shape`` and ``dtype``."""
        info = self._info(name)
        itemsize = np.dtype(dtype).itemsize
        nbytes = math.prod(shape) * itemsize
        if info.file_size > nbytes + _MAX_NPY_HEADER or info.file_size < nbytes:
            raise ModelFileError(
                f"{self.path!r}: the entry {name!r} has {info.file_size} bytes, which cannot hold an array of shape "
                f"{tuple(shape)} and dtype {dtype}."
            )
        if info.compress_type != zipfile.ZIP_STORED and info.compress_size * 1100 < info.file_size:
            raise ModelFileError(f"{self.path!r}: the entry {name!r} has an implausible compression ratio.")
        data = self.zf.read(name)
        f = io.BytesIO(data)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, SyntaxError, TypeError, EOFError) as exc:
            raise ModelFileError(f"{self.path!r}: the entry {name!r} is not a valid .npy array: {exc}") from exc
        if got_dtype.hasobject or got_dtype.fields is not None or got_dtype.subdtype is not None:
            raise ModelFileError(
                f"{self.path!r}: the entry {name!r} holds Python objects (a pickle); fusenet never unpickles. Refused."
            )
        if got_dtype.name != np.dtype(dtype).name or tuple(got_shape) != tuple(shape):
            raise ModelFileError(
                f"{self.path!r}: the entry {name!r} holds an array of shape {tuple(got_shape)} and dtype {got_dtype}, "
                f"but the file's manifest says shape {tuple(shape)} and dtype {dtype}."
            )
        if len(data) - f.tell() != nbytes:
            raise ModelFileError(
                f"{self.path!r}: the entry {name!r} has {len(data) - f.tell()} bytes of data, expected {nbytes} "
                f"(truncated?)."
            )
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise ModelFileError(f"{self.path!r}: the entry {name!r} could not be read: {exc}") from exc
        return array.astype(array.dtype.newbyteorder("="), copy=False)


def _check_shape(value, what, path):
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise ModelFileError(f"{path!r}: {what} must be a list of non-negative ints. Received: {value!r}")
    return tuple(value)


def _check_dtype(value, what, path):
    if not isinstance(value, str) or value not in _ALLOWED_DTYPES:
        raise ModelFileError(f"{path!r}: {what} must be one of {sorted(_ALLOWED_DTYPES)}. Received: {value!r}")
    return value


def _read_document(archive, formats) -> dict:
    doc = archive.read_json()
    if not isinstance(doc, dict):
        raise ModelFileError(f"{archive.path!r}: {_CONFIG} must hold a JSON object.")
    fmt = doc.get("format")
    if fmt not in formats:
        raise ModelFileError(f"{archive.path!r}: expected a file of format {list(formats)}. Received: format={fmt!r}")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(
            f"{archive.path!r}: unsupported format_version {version!r} (this fusenet reads 1..{FORMAT_VERSION})."
        )
    return doc


def _read_weights(archive, doc, model) -> list:
    """The weight arrays of the file, checked against ``model``'s weights (count, shapes) and the manifest."""
    manifest = doc.get("weights")
    path = archive.path
    if not isinstance(manifest, list):
        raise ModelFileError(f"{path!r}: 'weights' must be a list. Received: {type(manifest).__name__}")
    current = model.weights
    if len(manifest) != len(current):
        raise ModelFileError(
            f"{path!r}: the file has {len(manifest)} weight arrays, but {model.describe()} has {len(current)} "
            f"(shapes {[w.shape for w in current]})."
        )
    arrays, seen = [], set()
    for i, (item, ref) in enumerate(zip(manifest, current)):
        if not isinstance(item, dict):
            raise ModelFileError(f"{path!r}: weights[{i}] must be an object. Received: {item!r}")
        entry = item.get("entry")
        if not isinstance(entry, str) or not _ENTRY_NAME.fullmatch(entry) or not entry.startswith("weights/") or entry in seen:
            raise ModelFileError(f"{path!r}: weights[{i}] has an invalid or repeated entry name {entry!r}.")
        seen.add(entry)
        shape = _check_shape(item.get("shape"), f"weights[{i}].shape", path)
        dtype = _check_dtype(item.get("dtype"), f"weights[{i}].dtype", path)
        if shape != ref.shape:
            raise ModelFileError(
                f"{path!r}: weight {i} ({item.get('layer')!r}/{item.get('name')!r}) has shape {shape} in the file, "
                f"but the model expects {ref.shape}."
            )
        if np.dtype(dtype).kind != "f":
            raise ModelFileError(f"{path!r}: weight {i} has dtype {dtype}; weights must be floats.")
        arrays.append(archive.read_array(entry, shape, dtype))
    return arrays


def _decode_state(value, archive, depth=0):
    if depth > 50:
        raise ModelFileError(f"{archive.path!r}: optimizer_state is nested too deeply.")
    if isinstance(value, dict):
        if "__ndarray__" in value:
            entry = value["__ndarray__"]
            if not isinstance(entry, str) or not _ENTRY_NAME.fullmatch(entry) or not entry.startswith("optimizer/"):
                raise ModelFileError(f"{archive.path!r}: invalid optimizer array entry {entry!r}.")
            shape = _check_shape(value.get("shape"), f"{entry} shape", archive.path)
            dtype = _check_dtype(value.get("dtype"), f"{entry} dtype", archive.path)
            return archive.read_array(entry, shape, dtype)
        return {k: _decode_state(v, archive, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_state(v, archive, depth + 1) for v in value]
    return value


def _model_class(spec, path):
    if not isinstance(spec, dict):
        raise ModelFileError(f"{path!r}: 'model' must be an object with 'class_name' and 'config'.")
    name = spec.get("class_name")
    cls = _MODEL_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(
            f"{path!r}: unknown model class {name!r}; only {sorted(_MODEL_CLASSES)} can be loaded. Refused."
        )
    config = spec.get("config")
    if not isinstance(config, dict):
        raise ModelFileError(f"{path!r}: the model's 'config' must be an object.")
    return cls, config


def _guard(path, what):
    """Context manager turning any exception but ModelFileError into one naming ``path``."""

    class _Guard:
        def __enter__(self):
            return self

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None or issubclass(exc_type, ModelFileError) or not issubclass(exc_type, Exception):
                return False
            raise ModelFileError(f"{os.fspath(path)!r}: {what}: {exc_type.__name__}: {exc}") from exc

    return _Guard()


def _set_optimizer_state(model, state, path) -> None:
    optimizer = model.optimizer
    if not callable(getattr(optimizer, "set_state", None)):
        raise ModelFileError(f"{path!r}: the model's optimizer cannot restore a saved state (no set_state).")
    saved_shapes = state.get("param_shapes") if isinstance(state, dict) else None
    if saved_shapes is not None:
        shapes = [list(p.shape) for layer in model._all_layers() for _, p in layer.gradient_pairs()]
        if saved_shapes != shapes:
            raise ModelFileError(
                f"{path!r}: the saved optimizer state is for parameters of shapes {saved_shapes}, but "
                f"{model.describe()} trains parameters of shapes {shapes}."
            )
    try:
        optimizer.set_state(state)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path!r}: the saved optimizer state does not fit the model's optimizer: {exc}") from exc


def load_model(filepath, compile=True):
    """Load a model written by ``model.save`` / :func:`save_model`.

    Builds the architecture from fusenet's registries only, loads and checks every weight,
    and (with ``compile=True``, when the file has compile settings) compiles the model and
    restores the optimizer's state, so training continues exactly where it stopped.

    Raises:
        fusenet.errors.ModelFileError: the file is missing, not a fusenet model, truncated,
            corrupt, inconsistent, or names anything outside fusenet's registries.
    """
    with _guard(filepath, "could not load the model"):
        with _Archive(filepath) as archive:
            path = archive.path
            doc = _read_document(archive, ("fusenet.model",))
            cls, config = _model_class(doc.get("model"), path)
            try:
                model = cls.from_config(config)
            except (ValueError, TypeError, KeyError) as exc:
                raise ModelFileError(f"{path!r}: the architecture could not be built: {exc}") from exc
            arrays = _read_weights(archive, doc, model)
            compile_config = doc.get("compile")
            state = None
            if compile and compile_config is not None:
                try:
                    model.compile_from_config(compile_config)
                except (ValueError, TypeError, KeyError) as exc:
                    raise ModelFileError(f"{path!r}: the compile settings could not be restored: {exc}") from exc
                if doc.get("optimizer_state") is not None:
                    state = _decode_state(doc["optimizer_state"], archive)
            if state is not None:
                _set_optimizer_state(model, state, path)
            model.set_weights(arrays)
            return model


def _plain_npz_arrays(archive, model) -> list:
    names = sorted(archive.infos)
    current = model.weights
    expected = [f"arr_{i}.npy" for i in range(len(current))]
    if sorted(expected) != names:
        raise ModelFileError(
            f"{archive.path!r}: expected a fusenet weights file, or an .npz of {len(current)} arrays named "
            f"arr_0 ... arr_{len(current) - 1} (np.savez(path, *model.get_weights())). Received entries: {names[:10]}"
        )
    arrays = []
    for i, ref in enumerate(current):
        entry = f"arr_{i}.npy"
        # the header says the dtype; read it through the checked reader with the model's shape
        dtype = _peek_npy_dtype(archive, entry)
        arrays.append(archive.read_array(entry, ref.shape, dtype))
    return arrays


def _peek_npy_dtype(archive, entry) -> str:
    info = archive._info(entry)
    with archive.zf.open(info) as f:
        head = f.read(min(info.file_size, _MAX_NPY_HEADER))
    buf = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(buf)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = reader(buf)
    except (ValueError, SyntaxError, TypeError, EOFError) as exc:
        raise ModelFileError(f"{archive.path!r}: the entry {entry!r} is not a valid .npy array: {exc}") from exc
    if dtype.hasobject:
        raise ModelFileError(f"{archive.path!r}: the entry {entry!r} holds Python objects (a pickle). Refused.")
    return _check_dtype(dtype.name, f"{entry} dtype", archive.path)


def load_weights(model, filepath) -> None:
    """Load weights into ``model`` from a :func:`save_weights` file, a :func:`save_model` file, or a plain
    ``.npz`` of arrays ``arr_0..arr_{n-1}`` in ``get_weights()`` order. Checks everything first;
    on any problem raises :class:`~fusenet.errors.ModelFileError` and changes nothing."""
    model._require_built("load_weights()")
    with _guard(filepath, "could not load the weights"):
        with _Archive(filepath) as archive:
            if archive.has(_CONFIG):
                doc = _read_document(archive, ("fusenet.weights", "fusenet.model", "fusenet.training_state"))
                arrays = _read_weights(archive, doc, model)
            else:
                arrays = _plain_npz_arrays(archive, model)
            model.set_weights(arrays)


# ---------------------------------------------------------------- training state (BackupAndRestore)
def _rng_slots(model):
    """``{key: generator}`` for every ``np.random.Generator`` held by a layer of ``model`` (and sublayers)."""
    slots = {}

    def visit(layer, key):
        for attr, value in sorted(vars(layer).items()):
            if isinstance(value, np.random.Generator):
                slots[f"{key}#{attr}"] = value
        for sub_key, sub in getattr(layer, "_sublayers", {}).items():
            visit(sub, f"{key}/{sub_key}")

    for i, layer in enumerate(model._all_layers()):
        visit(layer, f"{i}:{type(layer).__name__}")
    return slots


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_training_state(model, filepath, metadata: dict) -> None:
    """Write everything an exact continuation of ``fit`` needs: the model file's content plus the random
    states of the layers and of the shuffling, and ``metadata`` (e.g. the finished epochs)."""
    doc, arrays, opt_arrays = _model_document(model, "fusenet.training_state")
    doc["training_state"] = {
        "metadata": _jsonable(metadata),
        "shuffle_seed": model._shuffle_seed,
        "rng_states": {key: _jsonable(gen.bit_generator.state) for key, gen in _rng_slots(model).items()},
    }
    _write_document(filepath, doc, arrays, opt_arrays)


def _check_rng_states(states, model, path):
    slots = _rng_slots(model)
    if not isinstance(states, dict) or set(states) != set(slots):
        raise ModelFileError(
            f"{path!r}: the random states in the file ({sorted(states) if isinstance(states, dict) else states!r}) "
            f"do not match the model's ({sorted(slots)}); was it saved from another architecture?"
        )
    checked = []
    for key, gen in slots.items():
        state = states[key]
        if not isinstance(state, dict) or state.get("bit_generator") != type(gen.bit_generator).__name__:
            raise ModelFileError(f"{path!r}: the random state {key!r} is not a {type(gen.bit_generator).__name__} state.")
        probe = type(gen.bit_generator)()
        try:
            probe.state = state
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise ModelFileError(f"{path!r}: the random state {key!r} is malformed: {exc}") from exc
        checked.append((gen, state))
    return checked


def load_training_state(model, filepath) -> dict:
    """Restore a :func:`save_training_state` file into ``model`` (weights, optimizer state, random states,
    shuffle seed); returns the saved metadata. Everything is checked before anything changes."""
    model._require_built("restoring a training state")
    with _guard(filepath, "could not restore the training state"):
        with _Archive(filepath) as archive:
            path = archive.path
            doc = _read_document(archive, ("fusenet.training_state",))
            arrays = _read_weights(archive, doc, model)
            training = doc.get("training_state")
            if not isinstance(training, dict) or not isinstance(training.get("metadata"), dict):
                raise ModelFileError(f"{path!r}: 'training_state' is missing or malformed.")
            metadata = training["metadata"]
            epoch = metadata.get("epoch")
            if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
                raise ModelFileError(f"{path!r}: the saved epoch must be a non-negative int. Received: {epoch!r}")
            seed = training.get("shuffle_seed")
            if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
                raise ModelFileError(f"{path!r}: the saved shuffle seed is malformed: {seed!r}")
            rngs = _check_rng_states(training.get("rng_states"), model, path)
            state = doc.get("optimizer_state")
            if state is not None:
                if not model.compiled:
                    raise ModelFileError(f"{path!r}: the file has an optimizer state, but {model.describe()} is not compiled.")
                _set_optimizer_state(model, _decode_state(state, archive), path)
            model.set_weights(arrays)
            for gen, st in rngs:
                gen.bit_generator.state = st
            if seed is not None:
                model._shuffle_seed = int(seed)
            return dict(metadata)
