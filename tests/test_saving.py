"""Saving and loading: round trips, atomic writes, and files that are truncated, corrupt or hostile
(always ModelFileError, never another exception, never code execution)."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

import fusenet
from fusenet import layers, models, optimizers, regularizers
from fusenet.errors import ModelFileError


def make_model(compiled=True):
    model = models.Sequential([
        layers.Input((5,)),
        layers.Dense(6, activation="relu", kernel_regularizer=regularizers.L2(1e-3), name="hidden"),
        layers.BatchNormalization(name="bn"),
        layers.Dropout(0.2, name="drop"),
        layers.Dense(3, activation="softmax", name="out"),
    ], name="saved")
    if compiled:
        model.compile(optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", ["accuracy"])
    return model


@pytest.fixture
def data(rng):
    x = rng.normal(size=(48, 5)).astype("float32")
    y = rng.integers(0, 3, size=48)
    return x, y


@pytest.fixture
def trained(data):
    model = make_model()
    model.fit(*data, epochs=2, batch_size=16, verbose=0)
    return model


def rewrite(src, dst, change):
    """Copy the zip ``src`` to ``dst``, passing ``{name: bytes}`` through ``change`` (which edits it in place)."""
    with zipfile.ZipFile(src) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    change(entries)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, payload in entries.items():
            zf.writestr(name, payload)


def edit_config(entries, fn):
    doc = json.loads(entries["config.json"])
    fn(doc)
    entries["config.json"] = json.dumps(doc).encode()


# ---------------------------------------------------------------- round trips
def test_save_load_predict_identical(trained, data, tmp_path):
    x, _ = data
    path = tmp_path / "model.fnet"
    trained.save(path)
    loaded = models.load_model(path)
    assert type(loaded) is models.Sequential and loaded.name == "saved"
    assert loaded.get_config() == trained.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trained.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), trained.get_weights()):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert loaded.compiled and type(loaded.optimizer) is optimizers.Adam
    assert loaded.optimizer.iterations == trained.optimizer.iterations == 6
    assert loaded.evaluate(*data, verbose=0) == trained.evaluate(*data, verbose=0)


def test_loaded_model_continues_training_identically(data, tmp_path):
    x, y = data
    model = models.Sequential([layers.Input((5,)), layers.Dense(6, activation="tanh"), layers.BatchNormalization(),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizers.RMSprop(learning_rate=0.01, momentum=0.5), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.fnet")
    loaded = models.load_model(tmp_path / "m.fnet")
    fusenet.set_random_seed(7)
    h1 = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    fusenet.set_random_seed(7)
    h2 = loaded.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert h1.history == h2.history
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_uncompiled_unbuilt_and_compile_false(trained, tmp_path):
    plain = make_model(compiled=False)
    plain.save(tmp_path / "plain.fnet")
    loaded = models.load_model(tmp_path / "plain.fnet")
    assert not loaded.compiled and loaded.count_params() == plain.count_params()
    lazy = models.Sequential([layers.Dense(3), layers.Dense(1)])
    lazy.save(tmp_path / "lazy.fnet")
    assert not models.load_model(tmp_path / "lazy.fnet").built
    trained.save(tmp_path / "t.fnet")
    assert not models.load_model(tmp_path / "t.fnet", compile=False).compiled


def test_saving_is_deterministic_and_refuses_to_overwrite_when_asked(trained, tmp_path):
    trained.save(tmp_path / "a.fnet")
    trained.save(tmp_path / "b.fnet")
    assert (tmp_path / "a.fnet").read_bytes() == (tmp_path / "b.fnet").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=False"):
        trained.save(tmp_path / "a.fnet", overwrite=False)
    with zipfile.ZipFile(tmp_path / "a.fnet") as zf:
        doc = json.loads(zf.read("config.json"))
        assert doc["format"] == "fusenet.model" and doc["fusenet_version"] == fusenet.__version__
        assert [w["name"] for w in doc["weights"]][:2] == ["kernel", "bias"]
        assert doc["compile"]["loss"]["class_name"] == "SparseCategoricalCrossentropy"
        assert doc["compile"]["metrics"] == ["accuracy"]
        assert all(zf.getinfo(w["entry"]).compress_type == zipfile.ZIP_STORED for w in doc["weights"])


def test_save_weights_and_load_weights(trained, data, tmp_path):
    x, _ = data
    for name in ("w.weights.zip", "w.npz"):
        trained.save_weights(tmp_path / name)
        fresh = make_model()
        fresh.load_weights(tmp_path / name)
        np.testing.assert_array_equal(fresh.predict(x, verbose=0), trained.predict(x, verbose=0))
    with np.load(tmp_path / "w.npz", allow_pickle=False) as npz:  # an .npz that numpy reads too
        assert len([k for k in npz.files if k.startswith("weights/")]) == len(trained.get_weights())
    np.savez(tmp_path / "plain.npz", *trained.get_weights())
    fresh = make_model()
    fresh.load_weights(tmp_path / "plain.npz")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), trained.predict(x, verbose=0))
    trained.save(tmp_path / "full.fnet")
    fresh = make_model()
    fresh.load_weights(tmp_path / "full.fnet")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), trained.predict(x, verbose=0))


def test_load_weights_mismatch_changes_nothing(trained, tmp_path):
    trained.save_weights(tmp_path / "w.zip")
    other = models.Sequential([layers.Input((5,)), layers.Dense(6), layers.Dense(3)])
    before = other.get_weights()
    with pytest.raises(ModelFileError, match="8 weight arrays, but .* has 4"):
        other.load_weights(tmp_path / "w.zip")
    wider = models.Sequential([layers.Input((5,)), layers.Dense(7, name="hidden"), layers.BatchNormalization(),
                               layers.Dropout(0.2), layers.Dense(3)])
    with pytest.raises(ModelFileError, match=r"weight 0 \('hidden'/'kernel'\) has shape \(5, 6\) in the file, but the model expects \(5, 7\)"):
        wider.load_weights(tmp_path / "w.zip")
    np.savez(tmp_path / "short.npz", *trained.get_weights()[:-1])
    with pytest.raises(ModelFileError, match="arr_0"):
        trained.load_weights(tmp_path / "short.npz")
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- atomic writes
def test_an_exception_inside_the_writer_leaves_the_previous_file(trained, data, tmp_path, monkeypatch):
    x, _ = data
    path = tmp_path / "model.fnet"
    trained.save(path)
    before = path.read_bytes()
    expected = trained.predict(x, verbose=0)
    trained.fit(*data, epochs=1, verbose=0)  # the weights change
    import fusenet.models.saving as saving

    calls = {"n": 0}
    real = saving._npy_bytes

    def failing(array):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(array)

    monkeypatch.setattr(saving, "_npy_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        trained.save(path)
    calls["n"] = 0
    with pytest.raises(OSError, match="disk full"):
        trained.save_weights(tmp_path / "new.npz")
    assert sorted(os.listdir(tmp_path)) == ["model.fnet"]  # no temporary file, no half-written new file
    assert path.read_bytes() == before
    np.testing.assert_array_equal(models.load_model(path).predict(x, verbose=0), expected)


# ---------------------------------------------------------------- malformed files
def test_truncation_at_every_byte_gives_model_file_error(tmp_path):
    model = models.Sequential([layers.Input((2,)), layers.Dense(2, name="d")], name="t")
    model.compile(optimizers.SGD(learning_rate=0.1, momentum=0.9), "mse")
    model.train_on_batch(np.ones((2, 2), "float32"), np.zeros((2, 2), "float32"))
    path = tmp_path / "m.fnet"
    model.save(path)
    data = path.read_bytes()
    assert len(data) < 8000  # small enough to try every offset
    cut = tmp_path / "cut.fnet"
    for size in range(len(data)):
        cut.write_bytes(data[:size])
        with pytest.raises(ModelFileError):
            models.load_model(cut)
    for size in range(0, len(data), 7):
        cut.write_bytes(data[:size])
        with pytest.raises(ModelFileError):
            model.load_weights(cut)


def test_corrupted_bytes_never_raise_anything_else(trained, data, tmp_path):
    path = tmp_path / "m.fnet"
    trained.save(path)
    data_bytes = bytearray(path.read_bytes())
    bad = tmp_path / "bad.fnet"
    rng = np.random.default_rng(0)
    offsets = sorted(set(rng.integers(0, len(data_bytes), size=400).tolist()))
    loaded = 0
    for offset in offsets:
        corrupted = bytearray(data_bytes)
        corrupted[offset] ^= 0xFF
        bad.write_bytes(bytes(corrupted))
        try:
            models.load_model(bad)
            loaded += 1  # e.g. a flipped byte in a zip field nobody reads
        except ModelFileError:
            pass
    assert loaded < len(offsets) // 4


@pytest.mark.parametrize("contents, match", [
    (b"", "not a zip"),
    (b"PK\x03\x04 not really", "not a zip"),
    (b"{}", "not a zip"),
])
def test_non_zip_files(tmp_path, contents, match):
    path = tmp_path / "x.fnet"
    path.write_bytes(contents)
    with pytest.raises(ModelFileError, match=match):
        models.load_model(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match="No such file"):
        models.load_model(tmp_path / "nope.fnet")
    with pytest.raises(ModelFileError, match="is a directory"):
        models.load_model(tmp_path)


def _break(doc_change=None, entries_change=None):
    def change(entries):
        if doc_change is not None:
            edit_config(entries, doc_change)
        if entries_change is not None:
            entries_change(entries)
    return change


@pytest.mark.parametrize("change, match", [
    (_break(entries_change=lambda e: e.pop("config.json")), "'config.json' is missing"),
    (_break(entries_change=lambda e: e.update({"config.json": b"{not json"})), "not valid JSON"),
    (_break(entries_change=lambda e: e.update({"config.json": b"[1, 2]"})), "JSON object"),
    (_break(lambda d: d.update(format="fusenet.weights")), "expected a file of format"),
    (_break(lambda d: d.update(format_version=99)), "unsupported format_version 99"),
    (_break(lambda d: d.update(model=None)), "'model' must be an object"),
    (_break(lambda d: d["model"].update(config=[])), "'config' must be an object"),
    (_break(lambda d: d.update(weights={})), "'weights' must be a list"),
    (_break(lambda d: d["weights"].pop()), "weight arrays, but"),
    (_break(lambda d: d["weights"][0].update(shape=[5, -6])), "non-negative ints"),
    (_break(lambda d: d["weights"][0].update(shape=[6, 5])), r"has shape \(6, 5\) in the file"),
    (_break(lambda d: d["weights"][0].update(dtype="float64")), "dtype float32, but the file's manifest says"),
    (_break(lambda d: d["weights"][0].update(dtype="complex128")), "dtype must be one of"),
    (_break(lambda d: d["weights"][0].update(entry="../../etc/passwd")), "invalid or repeated entry name"),
    (_break(lambda d: d["weights"][1].update(entry=d["weights"][0]["entry"])), "invalid or repeated entry name"),
    (_break(entries_change=lambda e: e.pop("weights/00001.npy")), "'weights/00001.npy' is missing"),
    (_break(entries_change=lambda e: e.update({"weights/00000.npy": e["weights/00000.npy"][:-4]})), "truncated"),
    (_break(entries_change=lambda e: e.update({"weights/00000.npy": e["weights/00000.npy"][:40]})), "cannot hold"),
    (_break(entries_change=lambda e: e.update({"weights/00000.npy": b"\x93NUMPY garbage" + bytes(120)})), "not a valid .npy"),
    (_break(lambda d: d["model"]["config"]["layers"][1]["config"].update(units="six")), "could not be built"),
    (_break(lambda d: d["model"]["config"]["layers"][1]["config"].update(bogus=1)), "could not be built"),
    (_break(lambda d: d["model"]["config"].update(layers=[[]])), "could not be built"),
    (_break(lambda d: d["compile"].update(optimizer={"class_name": "Adam", "config": {"learning_rate": -1}})),
     "compile settings could not be restored"),
    (_break(lambda d: d["optimizer_state"].update(iterations="many")), "optimizer state does not fit"),
    (_break(lambda d: d["optimizer_state"]["param_shapes"].pop()), "optimizer state is for parameters of shapes"),
    (_break(lambda d: d["optimizer_state"]["slots"][0].update(shape=[2])), r"shape"),
    (_break(lambda d: d["optimizer_state"]["slots"][0].update({"__ndarray__": "weights/00000.npy"})), "invalid optimizer array"),
])
def test_malformed_entries_give_model_file_error(trained, tmp_path, change, match):
    good = tmp_path / "good.fnet"
    trained.save(good)
    bad = tmp_path / "bad.fnet"
    rewrite(good, bad, change)
    with pytest.raises(ModelFileError, match=match):
        models.load_model(bad)


def test_duplicate_entries_are_refused(trained, tmp_path):
    good = tmp_path / "good.fnet"
    trained.save(good)
    bad = tmp_path / "bad.fnet"
    rewrite(good, bad, lambda e: None)
    with zipfile.ZipFile(bad, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("weights/00000.npy", b"x")
    with pytest.raises(ModelFileError, match="duplicate entry names"):
        models.load_model(bad)


# ---------------------------------------------------------------- hostile files
EXECUTED = []


class Payload:
    """Unpickling this would append to EXECUTED (and would run anything in a real attack)."""

    def __reduce__(self):
        return (EXECUTED.append, ("pwned",))


def pickled_npy():
    buf = io.BytesIO()
    np.save(buf, np.array([Payload()], dtype=object), allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("declare_object", [False, True])
def test_pickle_payload_in_a_weights_entry_is_refused_and_never_run(trained, tmp_path, declare_object):
    good = tmp_path / "good.fnet"
    trained.save(good)
    bad = tmp_path / "bad.fnet"

    def change(entries):
        entries["weights/00001.npy"] = pickled_npy()
        if declare_object:
            edit_config(entries, lambda d: d["weights"][1].update(dtype="object", shape=[1]))

    rewrite(good, bad, change)
    EXECUTED.clear()
    with pytest.raises(ModelFileError, match="pickle|dtype must be one of"):
        models.load_model(bad)
    with pytest.raises(ModelFileError):
        trained.load_weights(bad)
    assert EXECUTED == []
    np.savez(tmp_path / "plain.npz", *trained.get_weights())
    rewrite(tmp_path / "plain.npz", tmp_path / "evil.npz", lambda e: e.update({"arr_0.npy": pickled_npy()}))
    with pytest.raises(ModelFileError, match="pickle"):
        trained.load_weights(tmp_path / "evil.npz")
    assert EXECUTED == []


@pytest.mark.parametrize("where", ["model", "layer", "optimizer", "loss", "metric", "activation", "initializer"])
def test_class_paths_in_the_config_are_refused_and_run_nothing(trained, tmp_path, monkeypatch, where):
    ran = []
    monkeypatch.setattr(os, "system", lambda *a: ran.append(a))
    good = tmp_path / "good.fnet"
    trained.save(good)

    def hostile(doc):
        layer = doc["model"]["config"]["layers"][1]
        if where == "model":
            doc["model"]["class_name"] = "os.system"
        elif where == "layer":
            layer["class_name"] = "os.system"
        elif where == "optimizer":
            doc["compile"]["optimizer"]["class_name"] = "os.system"
        elif where == "loss":
            doc["compile"]["loss"] = {"class_name": "os.system", "config": {"command": "echo pwned"}}
        elif where == "metric":
            doc["compile"]["metrics"] = [{"class_name": "os.system", "config": {}}]
        elif where == "activation":
            layer["config"]["activation"] = "os.system"
        else:
            layer["config"]["kernel_initializer"] = {"class_name": "os.system", "config": {}}

    bad = tmp_path / "bad.fnet"
    rewrite(good, bad, lambda e: edit_config(e, hostile))
    with pytest.raises(ModelFileError, match="os.system|Unknown|unknown"):
        models.load_model(bad)
    assert ran == []


# ---------------------------------------------------------------- smaller paths
def test_save_path_errors_and_model_registry(trained, tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        trained.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trained.save(tmp_path / "missing" / "m.fnet")
    with pytest.raises(TypeError, match="subclass of fusenet.models.Model"):
        models.register_model_class(dict)

    class Custom(models.Sequential):
        pass

    custom = Custom([layers.Input((2,)), layers.Dense(1)])
    with pytest.raises(TypeError, match="not a registered model class"):
        custom.save(tmp_path / "c.fnet")
    models.register_model_class(Custom)
    custom.save(tmp_path / "c.fnet")
    assert type(models.load_model(tmp_path / "c.fnet")) is Custom
    assert os.listdir(tmp_path) == ["c.fnet"]


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("training_state"), "'training_state' is missing"),
    (lambda d: d["training_state"]["metadata"].update(epoch=-1), "non-negative int"),
    (lambda d: d["training_state"].update(shuffle_seed="x"), "shuffle seed"),
    (lambda d: d["training_state"].update(rng_states=[]), "random states in the file"),
    (lambda d: next(iter(d["training_state"]["rng_states"].values())).update(bit_generator="MT19937"), "not a PCG64 state"),
    (lambda d: next(iter(d["training_state"]["rng_states"].values())).update(state="x"), "malformed"),
    (lambda d: d.update(format="fusenet.model"), "expected a file of format"),
])
def test_malformed_backups_change_nothing(data, tmp_path, change, match):
    from fusenet import callbacks

    x, y = data
    make_model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.BackupAndRestore(tmp_path / "b", delete_checkpoint=False)])
    backup = tmp_path / "b" / "latest.backup"
    rewrite(backup, tmp_path / "bad", lambda e: edit_config(e, change))
    os.replace(tmp_path / "bad", backup)
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ModelFileError, match=match):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.BackupAndRestore(tmp_path / "b")])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == 0
