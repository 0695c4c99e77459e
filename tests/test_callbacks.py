"""Callbacks: the hook protocol, History, the progress bar in both output modes, EarlyStopping,
ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler, CSVLogger, TerminateOnNaN,
BackupAndRestore and LambdaCallback (Keras 3 semantics)."""

import csv
import os
import re
import sys

import numpy as np
import pytest

import fusenet
from fusenet import callbacks, layers, models, optimizers


def make_model(n_in=4, n_out=2, dropout=0.0, optimizer=None):
    stack = [layers.Input((n_in,)), layers.Dense(8, activation="relu")]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(n_out))
    model = models.Sequential(stack)
    model.compile(optimizer or optimizers.SGD(learning_rate=0.01), "mse", ["mae"])
    return model


@pytest.fixture
def data(rng):
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.normal(size=(40, 2)).astype("float32")
    return x, y


def scripted(key, values):
    """A callback that puts ``values[epoch]`` under ``key`` in the epoch logs (runs before the others)."""
    return callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update({key: values[epoch]}))


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_train_end(self, logs=None):
        self.events.append("train_end")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(f"batch_begin {batch}")

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(f"batch_end {batch} {sorted(logs)}")

    def on_test_begin(self, logs=None):
        self.events.append("test_begin")

    def on_test_batch_end(self, batch, logs=None):
        self.events.append(f"test_batch_end {batch}")

    def on_test_end(self, logs=None):
        self.events.append(f"test_end {sorted(logs)}")

    def on_predict_begin(self, logs=None):
        self.events.append("predict_begin")

    def on_predict_batch_end(self, batch, logs=None):
        self.events.append(f"predict_batch_end {batch} {logs['outputs'].shape}")

    def on_predict_end(self, logs=None):
        self.events.append("predict_end")


# ---------------------------------------------------------------- protocol
def test_hook_order_and_params(data):
    x, y = data
    model = make_model()
    rec = Recorder()
    model.fit(x[:30], y[:30], validation_data=(x[30:], y[30:]), epochs=2, batch_size=16, verbose=0, callbacks=[rec])
    assert rec.params == {"verbose": 0, "epochs": 2, "steps": 2}
    assert rec.model is model
    one_epoch = ["batch_begin 0", "batch_end 0 ['loss', 'mae']", "batch_begin 1", "batch_end 1 ['loss', 'mae']",
                 "test_begin", "test_batch_end 0", "test_end ['loss', 'mae']"]
    expected = (["train_begin", "epoch_begin 0"] + one_epoch + ["epoch_end 0 ['loss', 'mae', 'val_loss', 'val_mae']",
                "epoch_begin 1"] + one_epoch + ["epoch_end 1 ['loss', 'mae', 'val_loss', 'val_mae']", "train_end"])
    assert rec.events == expected
    rec.events.clear()
    model.predict(x[:5], batch_size=2, verbose=0, callbacks=[rec])
    assert rec.events == ["predict_begin", "predict_batch_end 0 (2, 2)", "predict_batch_end 1 (2, 2)",
                          "predict_batch_end 2 (1, 2)", "predict_end"]


def test_batch_aliases_and_callback_list_errors(data):
    x, y = data
    seen = []

    class Old(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    make_model().fit(x, y, batch_size=20, verbose=0, callbacks=[Old()])
    assert seen == [0, 1]
    with pytest.raises(TypeError, match=r"callbacks\[1\]"):
        callbacks.CallbackList([Old(), "early"])
    with pytest.raises(TypeError, match="list of Callback"):
        callbacks.CallbackList(3)


def test_history(data):
    x, y = data
    model = make_model()
    history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    assert history.epoch == [0, 1, 2]
    assert list(history.history) == ["loss", "mae", "val_loss", "val_mae"]
    assert all(len(v) == 3 and all(isinstance(f, float) for f in v) for v in history.history.values())


# ---------------------------------------------------------------- progress bar
def test_progbar_not_a_terminal_writes_one_line_per_epoch(data, capsys):
    x, y = data
    make_model().fit(x, y, epochs=2, batch_size=8, verbose=1, validation_split=0.2)
    out = capsys.readouterr().out
    lines = out.strip("\n").split("\n")
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    bar = r"4/4 \[==============================\] - \d+s \d+(us|ms)/step - loss: [\d.]+ - mae: [\d.]+ - val_loss: [\d.]+ - val_mae: [\d.]+"
    assert re.fullmatch(bar, lines[1]) and re.fullmatch(bar, lines[3])
    assert "\r" not in out and "ETA" not in out


def test_progbar_on_a_terminal_redraws_in_place(data, capsys, monkeypatch):
    x, y = data
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    make_model().fit(x, y, epochs=1, batch_size=8, verbose="auto")
    out = capsys.readouterr().out
    assert "Epoch 1/1" not in out  # one epoch: no header (Keras)
    first = out.split("\r")[1]
    assert re.match(r"1/5 \[=====>\.{24}\] - ETA: \d+s - loss: [\d.]+ - mae: [\d.]+", first)
    assert re.search(r"\r5/5 \[={30}\] - \d+s \d+(us|ms)/step - loss: [\d.]+ - mae: [\d.]+ *\n$", out)


def test_progbar_verbose_2_and_0(data, capsys):
    x, y = data
    model = make_model()
    model.fit(x, y, epochs=2, batch_size=10, verbose=2)
    lines = capsys.readouterr().out.strip().split("\n")
    assert lines[0] == "Epoch 1/2" and len(lines) == 4
    assert re.fullmatch(r"4/4 - \d+s - \d+(us|ms)/step - loss: [\d.]+ - mae: [\d.]+", lines[1])
    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_progbar_of_evaluate_and_predict(data, capsys):
    x, y = data
    model = make_model()
    model.evaluate(x, y, batch_size=16, verbose=1)
    assert re.fullmatch(r"3/3 \[=+\] - \d+s \d+(us|ms)/step - loss: [\d.]+ - mae: [\d.]+\n", capsys.readouterr().out)
    model.predict(x, batch_size=40, verbose=1)
    assert re.fullmatch(r"1/1 \[=+\] - \d+s \d+(us|ms)/step\n", capsys.readouterr().out)


def test_progbar_formats_small_and_array_values():
    import io

    stream = io.StringIO()
    bar = callbacks.Progbar(target=2, verbose=2, stream=stream)
    bar.update(2, [("loss", 1e-5), ("per_class", np.array([0.5, 0.25]))])
    assert re.search(r"loss: 1\.0000e-05 - per_class: \[0\.5 *, 0\.25\]", stream.getvalue())
    with pytest.raises(ValueError, match="verbose"):
        callbacks.Progbar(3, verbose=5)


# ---------------------------------------------------------------- EarlyStopping
def test_early_stopping_patience_and_restore_best_weights(data):
    x, y = data
    model = make_model()
    snapshots = []
    scores = [5.0, 3.0, 4.0, 3.5, 1.0, 0.5]
    stopper = callbacks.EarlyStopping(monitor="score", mode="min", patience=2, restore_best_weights=True, verbose=1)
    keep = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    history = model.fit(x, y, epochs=6, verbose=0, callbacks=[scripted("score", scores), keep, stopper])
    assert history.epoch == [0, 1, 2, 3]  # no improvement at epochs 2 and 3: stop
    assert stopper.stopped_epoch == 3 and stopper.best == 3.0 and stopper.best_epoch == 1
    for a, b in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)
    # reusing the callback starts afresh (state reset in on_train_begin)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[scripted("score", [9.0, 8.0, 7.0]), stopper])
    assert history.epoch == [0, 1, 2] and stopper.stopped_epoch == 0 and stopper.best == 7.0


def test_early_stopping_min_delta_baseline_start_from_epoch_and_auto_mode(data):
    x, y = data
    model = make_model()
    stopper = callbacks.EarlyStopping(monitor="val_accuracy", min_delta=0.1, patience=1)
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[scripted("val_accuracy", [0.5, 0.55, 0.58, 0.9, 1.0]), stopper])
    assert history.epoch == [0, 1]  # auto mode maximizes accuracy; +0.05 is below min_delta
    scores = [2.0, 1.5, 1.5, 1.5, 0.1]
    stopper = callbacks.EarlyStopping(monitor="loss_like", mode="min", patience=2)
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[scripted("loss_like", scores), stopper])
    assert history.epoch == [0, 1, 2, 3]
    stopper = callbacks.EarlyStopping(monitor="loss_like", mode="min", baseline=1.0, patience=2)
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[scripted("loss_like", scores), stopper])
    assert history.epoch == [0, 1, 2]  # improvements that miss the baseline do not reset the wait (Keras)
    stopper = callbacks.EarlyStopping(monitor="s", mode="min", patience=0, start_from_epoch=3)
    history = model.fit(x, y, epochs=6, verbose=0, callbacks=[scripted("s", [1, 2, 3, 4, 5, 6]), stopper])
    assert history.epoch == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot tell whether monitor='mystery'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[scripted("mystery", [1.0]), callbacks.EarlyStopping("mystery")])
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(mode="up")
    with pytest.raises(TypeError, match="patience"):
        callbacks.EarlyStopping(patience=1.5)


def test_early_stopping_on_val_loss_end_to_end(data, capsys):
    x, y = data
    model = make_model(optimizer=optimizers.SGD(learning_rate=0.0))  # the loss never improves
    stopper = callbacks.EarlyStopping(patience=2, verbose=1)
    history = model.fit(x, y, epochs=10, validation_split=0.25, verbose=0, callbacks=[stopper])
    assert history.epoch == [0, 1, 2] and "Epoch 3: early stopping" in capsys.readouterr().out


# ---------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_save_best_only_with_formatted_paths(data, tmp_path):
    x, y = data
    model = make_model()
    path = str(tmp_path / "ckpt-{epoch:02d}-{score:.2f}.fnet")
    scores = [3.0, 2.0, 2.5, 1.0]
    saved = {}
    keep = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: saved.update({epoch: model.get_weights()}))
    ckpt = callbacks.ModelCheckpoint(path, monitor="score", mode="min", save_best_only=True)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[scripted("score", scores), keep, ckpt])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01-3.00.fnet", "ckpt-02-2.00.fnet", "ckpt-04-1.00.fnet"]
    restored = models.load_model(tmp_path / "ckpt-02-2.00.fnet")
    for a, b in zip(restored.get_weights(), saved[1]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_weights_only_every_n_batches_and_verbose(data, tmp_path, capsys):
    x, y = data
    model = make_model()
    path = tmp_path / "sub" / "weights.npz"
    ckpt = callbacks.ModelCheckpoint(path, save_weights_only=True, save_freq=3, verbose=1)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[ckpt])  # 10 batches: saves after 3, 6, 9
    assert capsys.readouterr().out.count("saving model to") == 3
    other = make_model()
    other.load_weights(path)
    assert len(other.get_weights()) == 4
    with pytest.raises(ValueError, match="cannot format filepath"):
        make_model().fit(x, y, verbose=0, callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "{nope}.fnet"))])
    with pytest.raises(TypeError, match="save_freq"):
        callbacks.ModelCheckpoint("a.fnet", save_freq="batch")


# ---------------------------------------------------------------- learning rate
def test_reduce_lr_on_plateau_changes_the_learning_rate(data):
    x, y = data
    model = make_model(optimizer=optimizers.SGD(learning_rate=0.1))
    reduce = callbacks.ReduceLROnPlateau(monitor="score", factor=0.5, patience=2, cooldown=1, min_lr=0.02)
    history = model.fit(x, y, epochs=9, verbose=0, callbacks=[scripted("score", [1.0] * 9), reduce])
    # Keras 3 counting: epoch 0 sets the best; wait 1, 2 -> halve (logged lr is the one used in the epoch);
    # epoch 3 leaves the cooldown and counts 1; 4 -> halve; 5 counts 1; 6 -> max(0.0125, min_lr) = 0.02
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02])
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="factor >= 1.0"):
        callbacks.ReduceLROnPlateau(factor=1.5)


def test_learning_rate_scheduler(data, capsys):
    x, y = data
    model = make_model(optimizer=optimizers.SGD(learning_rate=0.1))
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch > 0 else lr, verbose=1)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[sched])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    assert "LearningRateScheduler setting learning rate to 0.025" in capsys.readouterr().out
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda epoch: 0.3 / (epoch + 1))])
    assert history.history["learning_rate"] == pytest.approx([0.3, 0.15])
    with pytest.raises(ValueError, match="must return a finite float"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda epoch: "fast")])
    with pytest.raises(TypeError, match="expected schedule to be a function"):
        callbacks.LearningRateScheduler(0.1)


# ---------------------------------------------------------------- CSVLogger
def test_csv_logger_file_contents(data, tmp_path):
    x, y = data
    model = make_model()
    path = tmp_path / "log.csv"
    history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0, callbacks=[callbacks.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    for i, row in enumerate(rows[1:]):
        assert float(row[1]) == history.history["loss"][i] and float(row[4]) == history.history["val_mae"][i]
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.CSVLogger(path, append=True)])
    lines = path.read_text().strip().split("\n")
    assert len(lines) == 6 and lines[4].startswith("0,") and lines[4].endswith(",NA,NA")  # no validation this time
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path, separator=";")])
    assert path.read_text().strip().split("\n")[0] == "epoch;loss;mae"
    with pytest.raises(ValueError, match="separator"):
        callbacks.CSVLogger(path, separator=";;")


# ---------------------------------------------------------------- TerminateOnNaN
def test_terminate_on_nan_stops_on_nan_data(data, capsys):
    x, y = data
    x = x.copy()
    x[13, 2] = np.nan
    model = make_model()
    stop = callbacks.TerminateOnNaN()
    history = model.fit(x, y, epochs=5, batch_size=10, shuffle=False, verbose=0, callbacks=[stop])
    assert history.epoch == [0] and np.isnan(history.history["loss"][0])
    assert stop.terminated_batch == (0, 1)
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out


# ---------------------------------------------------------------- BackupAndRestore
class Interrupt(callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_bit_identically(data, tmp_path):
    x, y = data

    def build(seed):
        fusenet.set_random_seed(seed)
        return make_model(dropout=0.25, optimizer=optimizers.Adam(learning_rate=0.01))

    fit_args = dict(epochs=5, batch_size=8, validation_split=0.2, verbose=0)
    reference = build(0)
    ref_history = reference.fit(x, y, callbacks=[callbacks.BackupAndRestore(tmp_path / "a")], **fit_args)
    assert not (tmp_path / "a").exists()  # deleted when training completed

    model = build(0)
    backup = callbacks.BackupAndRestore(tmp_path / "b")
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, callbacks=[backup, Interrupt(epoch=3, batch=2)], **fit_args)
    assert os.path.exists(backup.backup_path)
    history = model.fit(x, y, callbacks=[backup], **fit_args)
    assert backup.restored_epoch == 3 and history.epoch == [3, 4]
    assert history.history["loss"] == ref_history.history["loss"][3:]
    for a, b in zip(model.get_weights(), reference.get_weights()):
        assert a.tobytes() == b.tobytes()
    assert not (tmp_path / "b").exists()

    # a brand-new process would build a new model (other initial weights) and resume from the backup
    model = build(0)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, callbacks=[callbacks.BackupAndRestore(tmp_path / "c"), Interrupt(epoch=1, batch=0)], **fit_args)
    fresh = build(123)
    fresh.fit(x, y, callbacks=[callbacks.BackupAndRestore(tmp_path / "c")], **fit_args)
    for a, b in zip(fresh.get_weights(), reference.get_weights()):
        assert a.tobytes() == b.tobytes()
    assert fresh.optimizer.iterations == reference.optimizer.iterations


def test_backup_and_restore_keeps_the_backup_on_request_and_refuses_other_models(data, tmp_path):
    x, y = data
    model = make_model()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.BackupAndRestore(tmp_path, delete_checkpoint=False)])
    assert os.listdir(tmp_path) == ["latest.backup"]
    other = models.Sequential([layers.Input((4,)), layers.Dense(3), layers.Dense(2)])
    other.compile("sgd", "mse")
    with pytest.raises(fusenet.errors.ModelFileError, match="weight"):
        other.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.BackupAndRestore(tmp_path)])
    with pytest.raises(ValueError, match="save_freq='epoch'"):
        callbacks.BackupAndRestore(tmp_path, save_freq=10)


# ---------------------------------------------------------------- LambdaCallback
def test_lambda_callback(data):
    x, y = data
    calls = {"begin": 0, "epochs": [], "batches": 0, "end": None, "test": 0}
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.update(begin=calls["begin"] + 1),
        on_epoch_end=lambda epoch, logs: calls["epochs"].append((epoch, round(logs["loss"], 6))),
        on_train_batch_end=lambda batch, logs: calls.update(batches=calls["batches"] + 1),
        on_train_end=lambda logs: calls.update(end=sorted(logs)),
        on_test_begin=lambda logs: calls.update(test=calls["test"] + 1),
    )
    history = make_model().fit(x, y, epochs=2, batch_size=20, validation_split=0.5, verbose=0, callbacks=[cb])
    assert calls["begin"] == 1 and calls["batches"] == 2 and calls["test"] == 2
    assert [e for e, _ in calls["epochs"]] == [0, 1]
    assert [v for _, v in calls["epochs"]] == [round(v, 6) for v in history.history["loss"]]
    assert calls["end"] == ["loss", "mae", "val_loss", "val_mae"]
    with pytest.raises(TypeError, match="unknown hook 'on_epoch_finish'"):
        callbacks.LambdaCallback(on_epoch_finish=print)
    with pytest.raises(TypeError, match="on_epoch_end to be a function"):
        callbacks.LambdaCallback(on_epoch_end=3)


# ---------------------------------------------------------------- smaller paths
def test_progbar_unknown_target_add_and_time_formats():
    import io

    from fusenet.callbacks.progbar_logger import _format_eta, _format_per_unit

    stream = io.StringIO()
    bar = callbacks.Progbar(target=None, verbose=1, stream=stream)
    bar.add(3, {"loss": 0.5})
    bar.update(4, finalize=True)
    assert re.fullmatch(r"4/Unknown - \d+s \d+(us|ms|s)/step - loss: 0\.5000\n", stream.getvalue())
    assert [_format_eta(e) for e in (5, 75, 3725)] == ["5s", "1:15", "1:02:05"]
    assert [_format_per_unit(t, "step") for t in (2.0, 0.02, 2e-5)] == ["2s/step", "20ms/step", "20us/step"]
    with pytest.raises(ValueError, match="target"):
        callbacks.Progbar(target=-1)


def test_monitor_messages_and_warnings(data, tmp_path, capsys):
    x, y = data
    model = make_model()
    ckpt = callbacks.ModelCheckpoint(tmp_path / "best.fnet", monitor="score", mode="max", save_best_only=True, verbose=1)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[scripted("score", [0.5, 0.4, 0.7]), ckpt])
    out = capsys.readouterr().out
    assert "score improved from -inf to 0.50000" in out and "score did not improve from 0.50000" in out
    assert "score improved from 0.50000 to 0.70000" in out
    with pytest.warns(UserWarning, match="'val_loss', which is not in the logs"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.EarlyStopping()])
    with pytest.warns(UserWarning, match="can save the best model only"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(tmp_path / "m.fnet", save_best_only=True)])
    os.mkdir(tmp_path / "adir")
    with pytest.raises(IsADirectoryError, match="existing directory"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(tmp_path / "adir")])
    reduce = callbacks.ReduceLROnPlateau(monitor="val_loss", patience=0, verbose=1)
    with pytest.warns(UserWarning, match="val_loss"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[reduce])
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[scripted("acc_like", [0.5, 0.4]),
                        callbacks.ReduceLROnPlateau(monitor="acc_like", patience=0, verbose=1)])
    assert history.history["learning_rate"][1] == pytest.approx(model.optimizer.learning_rate * 10)
    assert "ReduceLROnPlateau reducing learning rate" in capsys.readouterr().out


def test_constructor_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="monitor"):
        callbacks.EarlyStopping(monitor=3)
    with pytest.raises(ValueError, match="baseline"):
        callbacks.EarlyStopping(baseline=float("nan"))
    with pytest.raises(ValueError, match="non-empty filepath"):
        callbacks.ModelCheckpoint("")
    with pytest.raises(TypeError, match="filepath to be a path"):
        callbacks.ModelCheckpoint(3)
    with pytest.raises(ValueError, match="non-empty backup_dir"):
        callbacks.BackupAndRestore("")
    with pytest.raises(TypeError, match="backup_dir to be a path"):
        callbacks.BackupAndRestore(None)
    with pytest.raises(TypeError, match="filename to be a path"):
        callbacks.CSVLogger(None)
    cbs = callbacks.CallbackList(callbacks.History())
    cbs.append(callbacks.TerminateOnNaN())
    assert len(cbs) == 2 and [type(c).__name__ for c in cbs] == ["History", "TerminateOnNaN"]
    with pytest.raises(TypeError, match="append"):
        cbs.append("x")


def test_backup_and_restore_keeps_other_files_and_refuses_a_foreign_backup(data, tmp_path):
    x, y = data
    (tmp_path / "notes.txt").write_text("mine")
    make_model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.BackupAndRestore(tmp_path)])
    assert os.listdir(tmp_path) == ["notes.txt"]
    # a backup whose random states belong to another architecture is refused before anything changes
    make_model(dropout=0.5).fit(x, y, epochs=1, verbose=0,
                                callbacks=[callbacks.BackupAndRestore(tmp_path / "b", delete_checkpoint=False)])
    model = make_model()
    model.layers[1].__dict__["_rng"] = np.random.default_rng(0)  # same weights, other random state layout
    before = model.get_weights()
    with pytest.raises(fusenet.errors.ModelFileError):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.BackupAndRestore(tmp_path / "b")])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
