"""fusenet.graph.compile: generated plans (``compiled.code``), arrays planned by liveness, the weight guard,
training through the plan (``train_step``, ``Model.compile(jit_compile=True)``), on the benchmark reference
models and a functional ResNet."""

import ast
import copy
import gc
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import fusenet
from fusenet import graph, layers, models
from fusenet.utils import floatx, set_floatx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference_models as rm  # noqa: E402

TOLERANCE = {"float32": (1e-5, 1e-5), "float64": (1e-10, 1e-12)}


@pytest.fixture
def float64_default():
    before = floatx()
    set_floatx("float64")
    yield
    set_floatx(before)


def _sublayers(model):
    out, stack = [], list(model._all_layers())
    while stack:
        layer = stack.pop()
        out.append(layer)
        stack.extend(layer._sublayers.values())
    return out


def _with_statistics(model, rng):
    """Non-trivial BatchNorm moving statistics, so that folding is exercised."""
    for layer in _sublayers(model):
        if isinstance(layer, layers.BatchNormalization):
            shape = layer.state["moving_mean"].shape
            layer.state["moving_mean"][...] = rng.normal(size=shape)
            layer.state["moving_variance"][...] = rng.uniform(0.5, 2.0, size=shape)
    return model


def _assert_close(actual, expected, dtype):
    rtol, atol = TOLERANCE[dtype]
    actual = actual if isinstance(actual, list) else [actual]
    expected = expected if isinstance(expected, list) else [expected]
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * max(1.0, float(np.abs(e).max())))


def functional_resnet(dtype="float32", width=4):
    """A functional ResNet with branches: identity and projection shortcuts, a side head, two outputs."""
    x = layers.Input((8, 8, 3), dtype=dtype)
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(width, 3, padding="same", use_bias=False)(x)))
    b = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(width, 3, padding="same", use_bias=False)(h)))
    b = layers.BatchNormalization()(layers.Conv2D(width, 3, padding="same", use_bias=False)(b))
    h = layers.ReLU()(layers.Add()([b, h]))
    b = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(h)
    b = layers.Dropout(0.3, seed=7)(layers.Conv2D(2 * width, 3, padding="same")(b))
    s = layers.BatchNormalization()(layers.Conv2D(2 * width, 1, strides=2)(h))
    h = layers.ReLU()(layers.Add()([b, s]))
    side = layers.Dense(2, name="side")(layers.Flatten()(layers.MaxPooling2D(2)(h)))
    main = layers.Dense(3, name="main")(layers.GlobalAveragePooling2D()(h))
    return models.Model(x, [main, side])


def small_cnn():
    """The reference CNN's structure at a small size (a 3-channel im2col convolution, then per-tap GEMMs)."""
    return models.Sequential([
        layers.Input((12, 12, 3)), layers.Conv2D(16, 3, padding="same", use_bias=False), layers.BatchNormalization(),
        layers.ReLU(), layers.Conv2D(16, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D(2), layers.Conv2D(24, 3, padding="same", use_bias=False), layers.BatchNormalization(),
        layers.ReLU(), layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(16), layers.ReLU(), layers.Dropout(0.3),
        layers.Dense(10),
    ])


def _reference(name, dtype):
    if dtype == "float64":
        before = floatx()
        set_floatx("float64")
        try:
            return rm.build_fusenet(name)
        finally:
            set_floatx(before)
    return rm.build_fusenet(name)


def _batch(name, n, dtype, rng):
    return rng.normal(size=(n,) + rm.SPECS[name]["input_shape"]).astype(dtype)


# ---------------------------------------------------------------- inference
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", rm.MODELS)
def test_reference_models_compiled_equal_interpreted(rng, name, dtype):
    model = _with_statistics(_reference(name, dtype), rng)
    compiled = graph.compile(model)
    for n in (2, 3):
        x = _batch(name, n, dtype, rng)
        _assert_close(compiled(x), model(x), dtype)
    plan = compiled._last_plan.inference
    if name in ("mlp", "cnn", "resnet"):
        assert plan.lowered == len(plan.steps)  # every node runs a kernel into planned arrays
    assert compiled.cache_info()[:3] == (0, 2, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_functional_resnet_compiled_equal_interpreted(rng, dtype):
    model = _with_statistics(functional_resnet(dtype), rng)
    compiled = graph.compile(model)
    x = rng.normal(size=(3, 8, 8, 3)).astype(dtype)
    _assert_close(compiled(x), model(x), dtype)
    y2 = compiled(x + 1)  # a second call on the same arrays
    _assert_close(y2, model(x + 1), dtype)
    code = compiled.code
    assert "_add(" in code and "calls the layer" not in code


def test_outputs_are_fresh_arrays_and_inputs_untouched(rng):
    model = _with_statistics(small_cnn(), rng)
    compiled = graph.compile(model)
    x1, x2 = (rng.normal(size=(2, 12, 12, 3)).astype("float32") for _ in range(2))
    keep = x1.copy()
    y1 = compiled(x1)
    first = y1.copy()
    compiled(x2)
    np.testing.assert_array_equal(y1, first)  # not overwritten by the next call
    np.testing.assert_array_equal(x1, keep)
    strided = np.asfortranarray(x1)  # any layout works
    _assert_close(compiled(strided), model(x1), "float32")
    _assert_close(compiled(x1.astype("float64")), model(x1.astype("float64")), "float32")


def test_layers_without_kernels_are_called_and_views_they_return_are_safe(rng):
    model = models.Sequential([
        layers.Input((6, 4)), layers.Dense(4), layers.Permute((2, 1)), layers.Dense(3),  # Permute: a view
        layers.ReLU(), layers.Cropping1D((1, 1)), layers.Activation("tanh"), layers.LSTM(5), layers.Dense(2),
        layers.Permute((1,)),
    ])
    compiled = graph.compile(model)
    x = rng.normal(size=(3, 6, 4)).astype("float32")
    y = compiled(x)
    _assert_close(y, model(x), "float32")
    code = compiled.code
    for kind in ("permute", "cropping1_d", "lstm"):
        assert any(kind in line and "calls the layer" in line for line in code.splitlines())
    held = compiled(x).copy()
    out = compiled(x)
    compiled(x * 2)
    np.testing.assert_array_equal(out, held)  # a layer's view of a planned array is copied out


# ---------------------------------------------------------------- the generated source
def test_code_is_python_naming_every_node(rng):
    model = _with_statistics(functional_resnet(), rng)
    compiled = graph.compile(model)
    with pytest.raises(ValueError, match="has no plan yet"):
        compiled.code  # noqa: B018
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    compiled(x)
    code = compiled.code
    tree = ast.parse(code)
    names = [f.name for f in tree.body]  # forward, after one function per run of per-sample steps (its chunks)
    assert names[-1] == "forward" and all(n.endswith("_lane") for n in names[:-1])
    g = compiled.graph(x)
    comments = [line.strip() for line in code.splitlines() if line.strip().startswith("# ")]
    for node in g.layer_nodes:
        assert any(c.startswith(f"# {node.name} ({node.type_name})") for c in comments), node.name
    assert code.rstrip().splitlines()[-1].strip().startswith("return [")
    assert compiled.code_for(x) == code
    training = compiled.code_for(x, training=True)
    names = [f.name for f in ast.parse(training).body]
    assert names == ["forward", "backward"]
    for node in compiled.graph(x, training=True).layer_nodes:
        assert f"# {node.name} ({node.type_name})" in training


def test_code_shows_kernels_views_and_calls():
    model = models.Sequential([layers.Input((5, 5, 2)), layers.Conv2D(3, 3, padding="same"), layers.ReLU(),
                               layers.Flatten(name="flat"), layers.Dense(4, activation="softmax", name="head")])
    compiled = graph.compile(model, dynamic_batch=True)
    compiled(np.zeros((2, 5, 5, 2), dtype="float32"))
    code = compiled.code
    assert "(None, 5, 5, 3)" in code  # shapes with the dynamic batch axis
    assert "flat (Flatten), view" in code
    assert "head_gemm(flat, head)" in code  # the GEMM and the bias into the planned output
    assert "head[...] = head_act(head)" in code  # softmax on the whole output


# ---------------------------------------------------------------- memory
def _peak(fn, x):
    gc.collect()
    tracemalloc.start()
    try:
        fn(x)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_no_allocation_per_call_after_the_first(rng):
    model = _with_statistics(small_cnn(), rng)
    compiled = graph.compile(model)
    x = rng.normal(size=(4, 12, 12, 3)).astype("float32")
    model(x)
    interpreted = _peak(model, x)
    first = _peak(compiled, x)
    second, third = _peak(compiled, x), _peak(compiled, x)
    assert second == third
    assert second < interpreted / 4 and first > second
    # what a call allocates is the copy of the output and NumPy's iteration buffers (bounded, whatever the batch)
    peaks = []
    for n in (32, 128):
        xn = rng.normal(size=(n, 12, 12, 3)).astype("float32")
        compiled(xn)
        peaks.append(_peak(compiled, xn))
    assert peaks[1] <= peaks[0] + (128 - 32) * 10 * 4
    fn = compiled._last_plan.inference.function(4)
    assert fn is compiled._last_plan.inference.function(4)  # bound once per batch size
    assert compiled.buffer_nbytes(x) == fn.memory.nbytes


def test_reference_cnn_holds_at_most_half_the_memory_of_interpreted_inference(rng):
    model = _with_statistics(rm.build_fusenet("cnn"), rng)
    x = _batch("cnn", rm.SPECS["cnn"]["batch"], "float32", rng)
    model(x)
    interpreted = _peak(model, x)  # unfused: every layer's output, the padded copies, the im2col columns
    compiled = graph.compile(model)
    compiled(x)
    held = compiled.buffer_nbytes(x) + _peak(compiled, x)  # the plan's arrays, and what a call adds
    assert held <= 0.5 * interpreted


def test_liveness_reuses_arrays_in_place_and_elides_padding(rng):
    model = models.Sequential([
        layers.Input((8, 8, 16)), layers.Conv2D(16, 3, padding="same", name="c1"),
        layers.BatchNormalization(center=False, name="bn"), layers.ReLU(name="r1"),
        layers.Conv2D(16, 3, padding="same", name="c2"), layers.ReLU(name="r2"),
        layers.GlobalAveragePooling2D(name="pool"), layers.Dense(2, name="head"),
    ])
    _with_statistics(model, rng)
    compiled = graph.compile(model, passes=["eliminate_dead"])  # no fusion: BN and ReLU stay nodes of their own
    x = rng.normal(size=(2, 8, 8, 16)).astype("float32")
    _assert_close(compiled(x), model(x), "float32")
    plan = compiled._last_plan.inference
    memory = plan.function(2).memory
    arrays = {plan.tensors[k].name: a for k, a in memory.arrays.items()}
    assert np.shares_memory(arrays["c1"], arrays["bn"])  # BN in place on the conv output (which dies there)
    assert np.shares_memory(arrays["c2"], arrays["r2"])  # ReLU in place on the conv output
    # ReLU r1 writes straight into the zero-bordered (padded) input of c2: no padding copy
    r1 = arrays["r1"]
    assert not r1.flags.c_contiguous and r1.base is not None
    steps = {s.name: i for i, s in enumerate(plan.steps)}
    assert steps["c2"] in memory.elided and steps["c1"] not in memory.elided  # c1 reads the model input
    assert memory.stages[steps["c2"]].shape == (2, 10, 10, 16)
    assert np.shares_memory(memory.stages[steps["c2"]], r1)
    separate = (sum(a.nbytes for k, a in memory.arrays.items() if a.base is None or a.flags.c_contiguous)
                + sum(a.nbytes for a in memory.stages.values())
                + sum(w.nbytes for ws in memory.workspaces.values() for w in ws.values()))
    assert memory.nbytes < separate / 2  # what the plan holds, against an array for everything
    for _ in range(2):  # calls on other data through the same arrays stay right
        x = rng.normal(size=(2, 8, 8, 16)).astype("float32")
        _assert_close(compiled(x), model(x), "float32")


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_convolutions_write_grid_rows_into_the_next_zero_bordered_stage(rng, monkeypatch, dtype, tiled):
    """A 3-channel stem (patches per block of rows) and a 3x3 per-tap convolution write their rows straight into
    the zero-bordered stage of the next 3x3 convolution; the border they scribble on is zeroed before it is read."""
    from fusenet.graph import _codegen

    before = floatx()
    set_floatx(dtype)
    try:
        model = _with_statistics(models.Sequential([
            layers.Input((16, 16, 3)), layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem"),
            layers.BatchNormalization(), layers.ReLU(), layers.Conv2D(16, 3, padding="same", activation="relu",
                                                                     name="taps"),
            layers.Conv2D(16, 3, padding="same", activation="tanh", name="last"), layers.GlobalAveragePooling2D(),
            layers.Dense(3),
        ]), rng)
    finally:
        set_floatx(before)
    x = rng.normal(size=(6, 16, 16, 3)).astype(dtype)
    model(x)
    if tiled:
        plan = graph.compile(model)._plan_for(x, False).inference
        monkeypatch.setattr(_codegen, "TILE_BYTES", max(seg.per_sample for seg in plan.segments) * 2)
    compiled = graph.compile(model)
    for _ in range(2):  # the second call through the same arrays (borders written by the first)
        _assert_close(compiled(x), model(x), dtype)
        x = rng.normal(size=x.shape).astype(dtype) * 3
    plan = compiled._last_plan.inference
    memory = plan.function(6).memory
    writers = sorted(plan.steps[plan.tensors[k].step_index].name for k in memory.bordered)
    assert len(writers) == 2 and writers[1].startswith("taps") and not writers[0].startswith("last")
    if tiled:
        assert plan.segments[0].chunk(6) < 6


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("which", ["small_cnn", "functional_resnet"])
def test_runs_of_per_sample_steps_go_over_the_batch_in_chunks(rng, monkeypatch, which, dtype, workers):
    """Chunks of a tiled run in one lane (chunk threads off, the default) or two (one set of arrays per thread)."""
    from fusenet import _parallel
    from fusenet.graph import _codegen

    monkeypatch.setattr(_parallel, "CHUNK_WORKERS", workers)

    before = floatx()
    set_floatx(dtype)
    try:
        model = _with_statistics(small_cnn() if which == "small_cnn" else functional_resnet(dtype), rng)
    finally:
        set_floatx(before)
    shape = (12, 12, 3) if which == "small_cnn" else (8, 8, 3)
    x = rng.normal(size=(12,) + shape).astype(dtype)
    model(x)
    untiled = graph.compile(model)
    expected = untiled(x)
    plan = untiled._last_plan.inference
    assert plan.segments and all(seg.chunk(12) == 12 for seg in plan.segments)  # everything fits: one chunk
    monkeypatch.setattr(_codegen, "TILE_BYTES", max(seg.per_sample for seg in plan.segments) * 3)
    compiled = graph.compile(model)
    for _ in range(2):  # the second call through the same arrays
        _assert_close(compiled(x), model(x), dtype)
        _assert_close(compiled(x), expected, dtype)
        x = rng.normal(size=x.shape).astype(dtype)
        expected = untiled(x)
    plan = compiled._last_plan.inference
    seg = plan.segments[0]
    assert seg.chunk(12) == 3 and seg.chunk(5) == 5 and seg.chunk(7) == 7  # a divisor, or no tiling
    memory = plan.function(12).memory
    inner = [memory.arrays[k] for k in seg.internal if k in memory.arrays]
    lanes = _codegen.lanes()
    assert lanes == workers
    assert inner and all(a.shape[0] == 3 * lanes for a in inner)  # made and read inside the run: a chunk per lane
    runs = compiled._last_plan.inference.function(12).__globals__[seg.loop]
    assert len(runs) == lanes and sorted(r[0] for lane in runs for r in lane) == [0, 3, 6, 9]
    assert "_run_lanes(" in compiled.code and "_lane(_runs" in compiled.code


def test_dynamic_batch_binds_each_batch_size_once(rng):
    model = _with_statistics(small_cnn(), rng)
    compiled = graph.compile(model, dynamic_batch=True)
    for n in (3, 1, 3, 2):
        x = rng.normal(size=(n, 12, 12, 3)).astype("float32")
        _assert_close(compiled(x), model(x), "float32")
    assert compiled.cache_info()[:3] == (3, 1, 1)
    assert sorted(compiled._last_plan.inference._bindings) == [1, 2, 3]
    with pytest.raises(ValueError, match="the same batch size"):
        a, b = layers.Input((2,)), layers.Input((2,))
        two = graph.compile(models.Model([a, b], layers.Add()([a, b])), dynamic_batch=True)
        two([np.zeros((2, 2), "float32"), np.zeros((3, 2), "float32")])


# ---------------------------------------------------------------- the weight guard
def test_weight_guard_modes(rng):
    model = _with_statistics(rm.build_fusenet("mlp"), rng)
    x = _batch("mlp", 2, "float32", rng)
    sampled, full, unchecked = (graph.compile(model, check_weights=c) for c in ("sample", "full", False))
    for compiled in (sampled, full, unchecked):
        compiled(x)
    bn = model.layers[1]
    bn.state["moving_variance"][...] *= 2  # what a training step does: every element changes
    for compiled in (sampled, full):
        _assert_close(compiled(x), model(x), "float32")
        assert compiled.cache_info().invalidations == 1
    assert not np.allclose(unchecked(x), model(x), rtol=1e-3)  # the old folded weights
    unchecked.cache_clear()
    _assert_close(unchecked(x), model(x), "float32")
    mean = bn.state["moving_mean"]
    mean[mean.size // 3] += 1.0  # one element between the sampled ones: only the full check sees it
    _assert_close(full(x), model(x), "float32")
    assert full.cache_info().invalidations == 2
    with pytest.raises(ValueError, match=r"check_weights to be 'sample', 'full', True or False. Received: "
                                         r"check_weights='often'"):
        graph.compile(model, check_weights="often")


# ---------------------------------------------------------------- training through the plan
def _generators(model):
    return [layer._rng for layer in _sublayers(model) if isinstance(getattr(layer, "_rng", None), np.random.Generator)]


def _one_step(model, run, x, y):
    """One SGD step of ``model`` through ``run(model, x, y)``: loss, predictions, gradients, new weights."""
    states = [copy.deepcopy(g.bit_generator.state) for g in _generators(model)]
    before = model.get_weights()
    optimizer = model.optimizer.get_state()
    out = []
    for which in ("interpreted", "compiled"):
        model.set_weights(before)
        model.optimizer.set_state(optimizer)  # the same momentum buffers in both runs
        for gen, state in zip(_generators(model), states):  # the same dropout masks in both runs
            gen.bit_generator.state = state
        loss, y_pred = run(model, which, x, y)
        grads = [g.copy() for layer in model._all_layers() for g in layer.grads.values()]
        out.append((loss, y_pred, grads, model.get_weights()))
    return out


def _run_step(model, which, x, y):
    if which == "interpreted":
        return model._gradient_step(x, y, None, model._forward, model._backward)
    compiled = getattr(model, "_test_compiled", None)
    if compiled is None:
        compiled = model._test_compiled = graph.compile(model)
    return compiled.train_step(x, y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", rm.MODELS)
def test_reference_models_train_through_the_plan(rng, name, dtype):
    model = _reference(name, dtype)
    x = _batch(name, 2, dtype, rng)
    y = rng.integers(0, rm.CLASSES, size=2)
    (l0, p0, g0, w0), (l1, p1, g1, w1) = _one_step(model, _run_step, x, y)
    rtol = TOLERANCE[dtype][0]
    assert l1 == pytest.approx(l0, rel=rtol)
    _assert_close(p1, p0, dtype)
    assert len(g0) == len(g1) > 0
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * max(1e-3, float(np.abs(a).max())))
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * max(1e-3, float(np.abs(a).max())))


def test_functional_resnet_trains_through_the_plan(rng, float64_default):
    model = functional_resnet("float64")
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"])
    x = rng.normal(size=(3, 8, 8, 3))
    y = [rng.integers(0, 3, size=3), rng.normal(size=(3, 2))]
    (l0, p0, g0, _), (l1, p1, g1, _) = _one_step(model, _run_step, x, y)
    assert l1 == pytest.approx(l0, rel=1e-12)
    _assert_close(p1, p0, "float64")
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)
    source = model._test_compiled.code
    assert "_acc(" in source  # the fan-out sums are written out in the backward


def test_fit_with_jit_compile_equals_interpreted_fit(rng):
    x = rng.normal(size=(20, 8, 8, 3))
    y = [rng.integers(0, 3, size=20), rng.normal(size=(20, 2))]
    runs = []
    for jit in (False, True):
        fusenet.set_random_seed(3)
        model = functional_resnet("float64")
        model.compile("adam", ["sparse_categorical_crossentropy", "mse"], jit_compile=jit)
        fusenet.set_random_seed(5)
        history = model.fit(x, y, batch_size=6, epochs=2, verbose=0, validation_split=0.2)
        runs.append((history.history, model.get_weights(), model.predict(x[:4], verbose=0), model))
    (h0, w0, p0, _), (h1, w1, p1, jitted) = runs
    assert h0.keys() == h1.keys()
    for key in h0:
        np.testing.assert_allclose(h1[key], h0[key], rtol=1e-10)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)
    _assert_close(p1, p0, "float64")
    info = jitted._jit.cache_info()
    assert info.misses >= 2 and info.hits > 0  # a training plan and inference plans, reused across batches
    assert jitted.get_compile_config()["jit_compile"] is True
    clone = functional_resnet("float64")
    clone.compile_from_config(jitted.get_compile_config())
    assert clone.jit_compile


def test_jit_compile_and_train_step_errors():
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    with pytest.raises(TypeError, match=r"expected jit_compile to be True or False. Received: jit_compile='yes'"):
        model.compile("sgd", "mse", jit_compile="yes")
    with pytest.raises(TypeError, match="train_step needs a fusenet model compiled"):
        graph.compile([layers.Dense(2)]).train_step(np.zeros((1, 3)), np.zeros((1, 2)))
    with pytest.raises(fusenet.errors.NotCompiledError, match="you must call compile"):
        graph.compile(model).train_step(np.zeros((1, 3), "float32"), np.zeros((1, 2)))
    compiled = graph.compile(model)
    with pytest.raises(RuntimeError, match="backward\\(\\) needs a preceding call with training=True"):
        compiled.backward(np.zeros((1, 2)))


def test_training_plan_puts_dense_input_gradients_in_buffers_planned_by_liveness(rng):
    from fusenet.fusion import FusedDenseBNActivation

    fused = FusedDenseBNActivation([layers.Dense(7), layers.BatchNormalization(), layers.ReLU()])
    model = models.Sequential([layers.Input((3, 4)), layers.Flatten(), layers.Dense(9), fused, layers.Dense(6),
                               layers.Dense(5), layers.Dense(2)])
    compiled = graph.compile(model)
    x = rng.normal(size=(4, 3, 4)).astype("float32")
    y = compiled(x, training=True)
    trainer = compiled._last_plan.trainer
    planned = set(trainer.grad_slot)
    assert len(planned) == 5  # every Dense-family node: the first one reads a Flatten, not the input
    assert len(set(trainer.grad_slot.values())) == 2  # a chain needs two storages, taken in turn
    assert "_into(" in compiled.code
    dy = rng.normal(size=y.shape).astype("float32")
    for layer in model.layers:
        layer.zero_grad()
    dx = compiled.backward(dy)
    grads = [g.copy() for layer in model.layers for g in layer.grads.values()]
    bufs = trainer.buffers(4)
    assert not any(np.may_share_memory(dx, b) for b in bufs.values())  # the Flatten's view of a buffer is copied
    reference = copy.deepcopy(model)
    for layer in reference.layers:
        layer.zero_grad()
    reference(x, training=True)
    expected = reference._backward(dy)
    _assert_close(dx, expected, "float32")
    _assert_close(grads, [g for layer in reference.layers for g in layer.grads.values()], "float32")
    kept = dx.copy()
    compiled(x + 1, training=True)
    compiled.backward(dy * 2)
    np.testing.assert_array_equal(dx, kept)  # a later step does not write into a returned gradient
    assert trainer.buffers(4) is bufs  # made once per batch size
    assert trainer.buffer_nbytes(4) == sum({id(b.base): b.base.nbytes for b in bufs.values()}.values())


def test_plain_dense_on_many_rows_follows_its_weights_updated_in_place(rng):
    from fusenet.fusion.dense import NT_ROWS

    model = models.Sequential([layers.Input((6,)), layers.Dense(5, name="plain")])
    compiled = graph.compile(model)
    x = rng.normal(size=(NT_ROWS + 2, 6)).astype("float32")
    _assert_close(compiled(x), model(x), "float32")
    model.layers[-1].params["kernel"][...] *= -2.0  # as an optimizer step: in place
    _assert_close(compiled(x), model(x), "float32")
