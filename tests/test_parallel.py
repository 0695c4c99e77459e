"""fusenet._parallel: run_chunks (every chunk once, errors raised in the caller, the BLAS thread count
restored, no nesting, the same numbers as a serial run) and split_run (two fixed halves, opt-in)."""

import threading

import numpy as np
import pytest

from fusenet import _parallel
from fusenet._parallel import run_chunks, worker_count

needs_control = pytest.mark.skipif(_parallel._CONTROL is None, reason="NumPy's OpenBLAS thread control not found")


@pytest.fixture
def two_blas_threads(monkeypatch):
    """BLAS at two threads and chunk threads allowed for the test (restored after), so that chunks run
    on two threads even on a machine or under a limit that gives one."""
    monkeypatch.setattr(_parallel, "CHUNK_WORKERS", 2)
    before = _parallel._CONTROL[0]()
    _parallel._CONTROL[1](2)
    yield
    _parallel._CONTROL[1](before)


@pytest.mark.parametrize("n_chunks", [0, 1, 2, 7])
def test_every_chunk_runs_once(n_chunks):
    seen = []
    lock = threading.Lock()

    def fn(i):
        with lock:
            seen.append(i)

    run_chunks(fn, n_chunks)
    assert sorted(seen) == list(range(n_chunks))


@needs_control
def test_chunks_run_on_two_threads_and_restore_the_blas_threads(two_blas_threads, monkeypatch):
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)
    assert worker_count(5) == 2 and worker_count(1) == 1
    threads, blas = set(), set()
    barrier = threading.Barrier(2, timeout=10)

    def fn(i):
        threads.add(threading.get_ident())
        blas.add(_parallel._CONTROL[0]())
        if i < 2:
            barrier.wait()  # the first two chunks meet: two threads at once
        assert worker_count(3) == 1  # inside a chunk: no nesting

    run_chunks(fn, 6)
    assert len(threads) == 2 and blas == {1}
    assert _parallel._CONTROL[0]() == 2


@needs_control
def test_an_error_in_a_chunk_is_raised_and_the_threads_restored(two_blas_threads, monkeypatch):
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)

    def fn(i):
        if i == 3:
            raise ValueError(f"chunk {i} failed")

    with pytest.raises(ValueError, match="chunk 3 failed"):
        run_chunks(fn, 5)
    assert _parallel._CONTROL[0]() == 2
    run_chunks(lambda i: None, 4)  # usable again (the running lock was released)
    assert not _parallel._RUNNING.locked()


@needs_control
def test_chunked_matmuls_equal_the_serial_result(two_blas_threads, monkeypatch, rng):
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)
    a, b = rng.normal(size=(64, 40)).astype(np.float32), rng.normal(size=(40, 24)).astype(np.float32)
    out = np.empty((64, 24), dtype=np.float32)

    def fn(i):
        rows = slice(8 * i, 8 * i + 8)
        np.matmul(a[rows], b, out=out[rows])
        np.tanh(out[rows], out=out[rows])

    run_chunks(fn, 8)
    serial = np.concatenate([np.tanh(a[8 * i:8 * i + 8] @ b) for i in range(8)])
    np.testing.assert_array_equal(out, serial)


@needs_control
def test_helper_threads_use_the_callers_floating_point_error_state(two_blas_threads, monkeypatch):
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)
    states = []
    barrier = threading.Barrier(2, timeout=10)

    def fn(i):
        states.append(np.geterr()["over"])
        barrier.wait()

    with np.errstate(over="ignore"):
        run_chunks(fn, 2)
    assert states == ["ignore", "ignore"]


def test_split_run_waits_for_its_worker_and_raises(monkeypatch):
    """An error in one half is raised after the other half finished; nested splits run serially; the
    worker runs under the caller's NumPy error settings; BLAS limited to one thread means no worker."""
    monkeypatch.setattr(_parallel, "SPLIT_WORKERS", 2)
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)
    blas = {"threads": 2}
    monkeypatch.setattr(_parallel, "_CONTROL", (lambda: blas["threads"], lambda n: blas.update(threads=n)))
    seen = []

    def fn(lo, hi):
        seen.append((lo, hi, _parallel.split_run(lambda a, b: (a, b), 4)))
        if lo == 0:
            raise ValueError("first half")
        return lo

    with pytest.raises(ValueError, match="first half"):
        _parallel.split_run(fn, 6)
    assert sorted(seen) == [(0, 3, [(0, 2), (2, 4)]), (3, 6, [(0, 2), (2, 4)])]
    assert _parallel.split_run(lambda lo, hi: hi - lo, 6) == [3, 3]
    with np.errstate(over="ignore"):
        assert _parallel.split_run(lambda lo, hi: np.geterr()["over"], 2) == ["ignore", "ignore"]
    barrier = threading.Barrier(2, timeout=10)

    def meet(lo, hi):
        barrier.wait()  # the two halves run at the same time, on two threads
        return threading.current_thread().name, blas["threads"]

    names = _parallel.split_run(meet, 2)
    assert names[0][0] != names[1][0] and names[0][1] == 1 and blas["threads"] == 2  # BLAS at 1 thread meanwhile
    assert _parallel.split(1) == [(0, 1)] and _parallel.split(5) == [(0, 3), (3, 5)]
    here = threading.current_thread().name
    assert _parallel.split_run(lambda lo, hi: threading.current_thread().name, 2, workers=1) == [here, here]
    blas["threads"] = 1
    names = _parallel.split_run(lambda lo, hi: threading.current_thread().name, 2)
    assert names[0] == names[1]


def test_fused_conv_inference_and_compiled_plans_on_two_threads_equal_serial(monkeypatch):
    """The row blocks of the fused conv layers and the chunks of a compiled plan give the same numbers
    on two chunk threads as one after the other."""
    from fusenet import graph, layers, models

    rng = np.random.default_rng(0)
    model = models.Sequential([layers.Input((12, 12, 3)), layers.Conv2D(16, 3, padding="same", use_bias=False),
                               layers.BatchNormalization(), layers.ReLU(),
                               layers.Conv2D(16, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
                               layers.MaxPooling2D(2), layers.Conv2D(32, 3, strides=2, padding="same"),
                               layers.BatchNormalization(), layers.ReLU(), layers.GlobalAveragePooling2D(),
                               layers.Dense(4)])
    for bn in (layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)):
        bn._state["moving_variance"][...] = rng.uniform(0.5, 1.5, size=bn._state["moving_variance"].shape)
    x = rng.normal(size=(9, 12, 12, 3)).astype(np.float32)
    fused, compiled = model.fuse(), graph.compile(model)
    serial = [fused(x), compiled(x)]
    monkeypatch.setattr(_parallel, "CHUNK_WORKERS", 2)
    monkeypatch.setattr(_parallel, "_CONTROL", (lambda: 2, lambda n: None))  # two threads even under a BLAS limit
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)
    assert _parallel.worker_count(4) == 2
    for a, b in zip(serial, [fused(x), compiled(x)]):
        np.testing.assert_array_equal(a, b)
