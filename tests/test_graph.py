"""fusenet.graph: tracing into a LayerGraph, each optimisation pass, compiled execution and its cache."""

import copy
import warnings

import numpy as np
import pytest

from fusenet import graph, layers, models
from fusenet.fusion import FusedLayer, FusionReport
from fusenet.graph import passes


def assert_same_weights(model, before):
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- reference-style models
def mlp(dtype=None):
    return models.Sequential([
        layers.Input((12,), dtype=dtype), layers.Dense(16), layers.BatchNormalization(), layers.ReLU(),
        layers.Dropout(0.2, seed=1), layers.Dense(16, activation="relu"), layers.Dropout(0.1, seed=2),
        layers.Dense(4, activation="softmax"),
    ])


def cnn(dtype=None):
    return models.Sequential([
        layers.Input((10, 10, 2), dtype=dtype), layers.Conv2D(6, 3, padding="same"), layers.BatchNormalization(),
        layers.ReLU(), layers.MaxPooling2D(2), layers.DepthwiseConv2D(3, padding="same"), layers.BatchNormalization(),
        layers.ReLU(), layers.Flatten(), layers.Reshape((5, 30)), layers.Flatten(), layers.Dense(3),
    ])


def residual_sequential(dtype=None):
    return models.Sequential([
        layers.Input((8, 8, 3), dtype=dtype), layers.Conv2D(4, 3, padding="same"),
        layers.Residual([layers.Conv2D(4, 3, padding="same", dtype=dtype), layers.BatchNormalization(dtype=dtype),
                         layers.ReLU(dtype=dtype), layers.Conv2D(4, 3, padding="same", dtype=dtype)]),
        layers.ReLU(), layers.GlobalAveragePooling2D(), layers.Dense(2),
    ])


def functional_resnet(dtype=None):
    x = layers.Input((8, 8, 3), dtype=dtype)
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(4, 3, padding="same")(x)))
    b = layers.BatchNormalization()(layers.Conv2D(4, 3, padding="same")(h))
    h = layers.ReLU()(layers.Add()([b, h]))
    b = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(h)
    b = layers.Dropout(0.3)(layers.Conv2D(6, 3, padding="same")(b))
    s = layers.Conv2D(6, 1, strides=2)(h)
    h = layers.ReLU()(layers.Add()([b, s]))
    return models.Model(x, layers.Dense(2)(layers.GlobalAveragePooling2D()(h)))


def transformer(dtype=None):
    return models.Sequential([
        layers.Input((6, 8), dtype=dtype), layers.Dense(8),
        layers.TransformerEncoderBlock(8, 2, 16, dropout=0.1, seed=3),
        layers.TransformerEncoderBlock(8, 2, 16, norm_first=False, seed=4),
        layers.GlobalAveragePooling1D(), layers.Dense(2),
    ])


REFERENCE = {"mlp": (mlp, (12,)), "cnn": (cnn, (10, 10, 2)), "residual": (residual_sequential, (8, 8, 3)),
             "functional_resnet": (functional_resnet, (8, 8, 3)), "transformer": (transformer, (6, 8))}


def _trained_bn(model, rng):
    """Give every BatchNormalization non-trivial moving statistics (so that folding is tested)."""
    for layer in _all_sublayers(model):
        if isinstance(layer, layers.BatchNormalization):
            mean, var = layer.state["moving_mean"], layer.state["moving_variance"]
            mean[...] = rng.normal(size=mean.shape)
            var[...] = rng.uniform(0.5, 2.0, size=var.shape)
            if "gamma" in layer.params:
                layer.params["gamma"][...] = rng.uniform(0.5, 1.5, size=mean.shape)
            if "beta" in layer.params:
                layer.params["beta"][...] = rng.normal(size=mean.shape)
    return model


def _all_sublayers(model):
    out = []

    def visit(layer):
        out.append(layer)
        for sub in layer._sublayers.values():
            visit(sub)

    for layer in model._all_layers():
        visit(layer)
    return out


# ---------------------------------------------------------------- tracing
def test_trace_sequential_gives_nodes_in_order_with_shapes_and_dtype():
    model = mlp()
    g = graph.trace(model, np.zeros((5, 12), dtype="float32"))
    assert [n.type_name for n in g.nodes] == ["Input", "Dense", "BatchNormalization", "ReLU", "Dropout", "Dense",
                                              "Dropout", "Dense"]
    assert [n.layer for n in g.layer_nodes] == model.layers
    assert g.nodes[0].kind == "input" and g.nodes[0].layer is model._all_layers()[0]
    for prev, node in zip(g.nodes, g.nodes[1:]):
        assert node.input_ids == (prev.id,) and node.input_shapes == prev.output_shapes
    assert g.nodes[1].input_shape == (5, 12) and g.nodes[1].output_shape == (5, 16)
    assert g.output_shapes == [(5, 4)] and {n.dtype for n in g.nodes} == {"float32"}
    g_none = graph.trace(model)  # the model's own input shape
    assert g_none.nodes[1].input_shape == (None, 12)
    assert graph.trace(mlp("float64"), (None, 12)).nodes[-1].dtype == "float64"


def test_trace_functional_keeps_the_dag():
    model = functional_resnet()
    g = graph.trace(model, (2, 8, 8, 3))
    adds = [n for n in g.nodes if n.type_name == "Add"]
    assert len(adds) == 2 and all(n.multi_input and len(n.inputs) == 2 for n in adds)
    assert [n.layer for n in g.nodes] == model.layers
    positions = {n.id: i for i, n in enumerate(g.nodes)}
    assert all(positions[src] < positions[n.id] for n in g.nodes for src in n.input_ids)  # topological
    assert g.node(adds[1].id).output_shape == (2, 4, 4, 6)


def test_trace_expands_residual_into_parts_and_its_add():
    model = residual_sequential()
    g = graph.trace(model, (3, 8, 8, 3))
    block = model.layers[1]
    types = [n.type_name for n in g.nodes]
    assert types == ["Input", "Conv2D", "Conv2D", "BatchNormalization", "ReLU", "Conv2D", "Add", "ReLU",
                     "GlobalAveragePooling2D", "Dense"]
    add = g.nodes[6]
    assert add.layer is block.merge and add.inputs == ((g.nodes[5].id, 0), (g.nodes[1].id, 0))
    assert [n.layer for n in g.nodes[2:6]] == block.body and g.nodes[2].origin.endswith("/body0")
    unexpanded = graph.trace(model, (3, 8, 8, 3), expand=False)
    assert [n.type_name for n in unexpanded.nodes][2] == "Residual"
    shortcut = models.Sequential([layers.Input((5,)), layers.Residual([layers.Dense(3)], shortcut=layers.Dense(3))])
    g2 = graph.trace(shortcut)
    assert [n.type_name for n in g2.nodes] == ["Input", "Dense", "Dense", "Add"] and g2.nodes[2].input_ids == (0,)


@pytest.mark.parametrize("norm_first", [True, False])
def test_trace_expands_the_transformer_block_per_its_forward(norm_first):
    block = layers.TransformerEncoderBlock(8, 2, 16, dropout=0.1, norm_first=norm_first)
    g = graph.trace(models.Sequential([layers.Input((5, 8)), block]))
    names = [n.name.replace(block.name + "_", "") for n in g.nodes[1:]]
    if norm_first:
        assert names == ["attention_norm", "attention", "attention_dropout", "attention_add", "feedforward_norm",
                         "feedforward_intermediate", "feedforward_output", "feedforward_dropout", "feedforward_add"]
    else:
        assert names == ["attention", "attention_dropout", "attention_add", "attention_norm",
                         "feedforward_intermediate", "feedforward_output", "feedforward_dropout", "feedforward_add",
                         "feedforward_norm"]
    add1 = next(n for n in g.nodes if n.name.endswith("attention_add"))
    assert add1.inputs[0] == (0, 0) and isinstance(add1.layer, layers.Add)  # x + attend(...)
    assert all(n.output_shape == (None, 5, 8) or n.output_shape == (None, 5, 16) for n in g.nodes)


def test_trace_of_a_layer_and_of_a_list_of_layers():
    block = layers.Residual([layers.Dense(4)])
    g = graph.trace(block, (None, 4))
    assert [n.type_name for n in g.nodes] == ["Input", "Dense", "Add"]
    chain = graph.trace([layers.Dense(3), layers.ReLU()], np.zeros((2, 5)))
    assert chain.output_shapes == [(2, 3)] and chain.nodes[0].dtype == "float64"


def test_trace_errors_name_the_layer_and_shapes():
    model = mlp()
    with pytest.raises(ValueError, match=r"input 0 \(input.*\) expects shape \(None, 12\), but the input spec has "
                                         r"shape \(2, 7\)"):
        graph.trace(model, (2, 7))
    with pytest.raises(ValueError, match="has 1 input"):
        graph.trace(model, [(None, 12), (None, 12)])
    unbuilt = models.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match="input shape of 'sequential.*' is unknown"):
        graph.trace(unbuilt)
    late = layers.Dense(2, name="late")
    graph.trace([late], (None, 4))  # builds the layer for 4 features
    with pytest.raises(ValueError, match=r"layer 'late' \(Dense\) cannot take input of shape \(None, 5\)"):
        graph.trace([late], (None, 5))


class _ValueDependent(layers.Layer):
    """A layer whose computation branches on the values (it says so with ``dynamic = True``)."""

    dynamic = True

    def forward(self, x, training=False):
        return x if x.sum() > 0 else -x

    def backward(self, dy):  # pragma: no cover - not trained here
        return dy


class _BranchingModel(models.Sequential):
    def _forward(self, x, training=False):
        out = super()._forward(x, training)
        return out if np.all(np.isfinite(out)) else np.zeros_like(out)


def test_value_dependent_models_are_refused_and_run_interpreted(rng):
    model = models.Sequential([layers.Input((4,)), layers.Dense(3), _ValueDependent()])
    with pytest.raises(graph.TraceError, match=r"_value_dependent.*dynamic=True"):
        graph.trace(model)
    x = rng.normal(size=(2, 4)).astype("float32")
    with pytest.warns(graph.CompileFallbackWarning, match="runs interpreted: .*dynamic=True"):
        compiled = graph.compile(model)
    assert compiled.interpreted and "dynamic=True" in compiled.fallback_reason
    np.testing.assert_array_equal(compiled(x), model(x))
    branching = _BranchingModel([layers.Input((4,)), layers.Dense(2)])
    with pytest.raises(graph.TraceError, match="overrides _forward"):
        graph.compile(branching, fallback="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        silent = graph.compile(branching, fallback="silent")
    np.testing.assert_array_equal(silent(x), branching(x))
    assert "overrides _forward" in silent.fallback_reason
    with pytest.raises(graph.TraceError, match="cannot trace"):
        graph.trace(object())


# ---------------------------------------------------------------- printing
def test_to_dot_and_table():
    model = functional_resnet()
    g = graph.trace(model)
    dot = g.to_dot()
    assert dot.startswith('digraph "functional') and dot.rstrip().endswith("}")
    assert dot.count("->") == sum(len(n.inputs) for n in g.nodes) + len(g.outputs)
    add = next(n for n in g.nodes if n.type_name == "Add")
    for src in add.input_ids:
        assert f"n{src} -> n{add.id}" in dot
    assert f'label="{add.name}\\nAdd\\n(None, 8, 8, 4)"' in dot
    table = str(g)
    assert "node (type)" in table and f"{add.name} (Add)" in table and "(None, 8, 8, 4)" in table
    optimised = graph.optimize(g)
    text = optimised.table()
    assert "note: remove_dropout: removed" in text and "note: fuse_patterns:" in text
    assert optimised.to_dot().count("->") < dot.count("->")


# ---------------------------------------------------------------- passes, each on its own
def _run(g, x, training=False):
    return graph.Program(g).forward([x], training=training)


def _check_pass_keeps_numbers(before, after, x, rtol=1e-6, atol=1e-7):
    for a, b in zip(_run(after, x), _run(before, x)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_remove_identity(rng):
    model = models.Sequential([
        layers.Input((3, 4)), layers.Identity(), layers.Dense(4), layers.Activation("linear"), layers.Dropout(0.0),
        layers.Reshape((3, 4)), layers.Permute((1, 2)), layers.ActivityRegularization(l1=0.1), layers.Dense(2),
    ])
    g = graph.trace(model)
    before = copy.copy(g.nodes)
    out = passes.remove_identity(g)
    assert g.nodes == before  # the input graph is unchanged
    assert [n.type_name for n in out.nodes] == ["Input", "Dense", "Dense"]
    assert out.nodes[2].input_ids == (out.nodes[1].id,)
    assert len(out.notes) == 6
    training = passes.remove_identity(g, training=True)  # the activity penalty is part of the training loss
    assert [n.type_name for n in training.nodes] == ["Input", "Dense", "ActivityRegularization", "Dense"]
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    _check_pass_keeps_numbers(g, out, x, rtol=0, atol=0)


def test_remove_dropout_only_touches_dropout_layers(rng):
    model = models.Sequential([
        layers.Input((4, 4, 2)), layers.Conv2D(3, 1), layers.SpatialDropout2D(0.3), layers.GaussianNoise(0.5),
        layers.Flatten(), layers.Dropout(0.5), layers.GaussianDropout(0.2), layers.AlphaDropout(0.1), layers.Dense(2),
    ])
    g = graph.trace(model)
    out = passes.remove_dropout(g)
    assert [n.type_name for n in out.nodes] == ["Input", "Conv2D", "Flatten", "Dense"]
    x = rng.normal(size=(3, 4, 4, 2)).astype("float32")
    _check_pass_keeps_numbers(g, out, x, rtol=0, atol=0)
    assert [n.type_name for n in graph.optimize(g, training=True).nodes] == [n.type_name for n in g.nodes]


def test_fold_batchnorm(rng):
    model = _trained_bn(cnn(), rng)
    before = model.get_weights()
    g = graph.trace(model)
    out = passes.fold_batchnorm(g)
    assert [n.type_name for n in out.nodes] == ["Input", "Conv2D", "ReLU", "MaxPooling2D", "DepthwiseConv2D", "ReLU",
                                                "Flatten", "Reshape", "Flatten", "Dense"]
    folded = out.nodes[1].layer
    assert folded is not model.layers[0] and out.nodes[1].sources == (model.layers[0], model.layers[1])
    assert_same_weights(model, before)
    x = rng.normal(size=(4, 10, 10, 2)).astype("float32")
    _check_pass_keeps_numbers(g, out, x, rtol=1e-5, atol=1e-5)
    # a Dense without bias and with float64 weights
    dense = models.Sequential([layers.Input((5,), dtype="float64"), layers.Dense(3, use_bias=False),
                               layers.BatchNormalization(center=False)])
    _trained_bn(dense, rng)
    g64 = graph.trace(dense)
    out64 = passes.fold_batchnorm(g64)
    assert [n.type_name for n in out64.nodes] == ["Input", "Dense"] and out64.nodes[1].layer.use_bias
    _check_pass_keeps_numbers(g64, out64, rng.normal(size=(4, 5)), rtol=1e-12, atol=1e-12)


def test_fold_batchnorm_leaves_what_it_cannot_fold():
    x = layers.Input((4,))
    h = layers.Dense(4)(x)
    shared = layers.BatchNormalization()(h)  # the Dense output is also read by the Add: not single-consumer
    y = layers.Add()([shared, h])
    act = layers.BatchNormalization()(layers.Dense(4, activation="relu")(y))  # the activation sits in between
    g = graph.trace(models.Model(x, act))
    assert passes.fold_batchnorm(g) is g


def test_merge_reshapes(rng):
    model = models.Sequential([layers.Input((4, 6)), layers.Flatten(), layers.Reshape((3, 8)), layers.Reshape((2, 12)),
                               layers.Dense(2), layers.Reshape((1, 4)), layers.Flatten()])
    g = graph.trace(model)
    out = passes.merge_reshapes(g)
    assert [n.type_name for n in out.nodes] == ["Input", "Reshape", "Dense", "Flatten"]
    assert out.nodes[1].layer.target_shape == (2, 12) and out.nodes[1].output_shape == (None, 2, 12)
    assert isinstance(out.nodes[3].layer, layers.Flatten) and out.nodes[3].layer is not model.layers[-1]
    _check_pass_keeps_numbers(g, out, rng.normal(size=(3, 4, 6)).astype("float32"), rtol=0, atol=0)
    # the training graph trains through the merged reshape exactly
    dy = rng.normal(size=(3, 4)).astype("float32")
    grads = []
    for gr in (g, out):
        program = graph.Program(gr)
        for layer in model.layers:
            layer.zero_grad()
        program.forward([np.ones((3, 4, 6), dtype="float32")], training=True)
        grads.append(program.backward([dy])[0])
    np.testing.assert_array_equal(grads[0], grads[1])


def test_fuse_patterns_only_on_single_consumer_chains(rng):
    x = layers.Input((6,))
    h = layers.Dense(8, name="branching")(x)
    a = layers.ReLU()(layers.BatchNormalization()(h))  # 'branching' feeds two layers: no Dense+BN+ReLU here
    b = layers.ReLU()(layers.BatchNormalization()(layers.Dense(8, name="chained")(x)))
    y = layers.Dense(2)(layers.Add()([a, b, h]))
    model = _trained_bn(models.Model(x, y), rng)
    g = graph.trace(model)
    report = FusionReport()
    out = passes.fuse_patterns(g, report=report)
    fused = [n for n in out.nodes if isinstance(n.layer, FusedLayer)]
    assert len(fused) == 1 and [s.name for s in fused[0].sources][0] == "chained"
    assert out.find("branching").layer is model.get_layer("branching")
    assert len(report.fused) == 1 and "chained" in report.fused[0].layers[0]
    xs = rng.normal(size=(5, 6)).astype("float32")
    _check_pass_keeps_numbers(g, out, xs, rtol=1e-5, atol=1e-6)


def test_eliminate_dead():
    x = layers.Input((3,))
    h = layers.Dense(4, name="trunk")(x)
    head_a = layers.Dense(2, name="head_a")(h)
    head_b = layers.Dense(1, name="head_b")(layers.ReLU(name="relu_b")(h))
    g = graph.trace(models.Model(x, [head_a, head_b]))
    assert passes.eliminate_dead(g) is g
    only_a = g.with_outputs([g.find("head_a").id])
    out = passes.eliminate_dead(only_a)
    assert [n.name for n in out.nodes][1:] == ["trunk", "head_a"]
    assert out.notes == ["eliminate_dead: removed relu_b (ReLU)", "eliminate_dead: removed head_b (Dense)"]
    y = layers.Input((3,), name="unused_input")
    two_inputs = graph.LayerGraph([g.nodes[0], graph.GraphNode(99, "input", y, output_shapes=((None, 3),))]
                                  + list(g.nodes[1:]), g.outputs)
    assert len(passes.eliminate_dead(two_inputs).input_nodes) == 2  # inputs always stay


def test_optimize_pipeline_and_errors():
    g = graph.trace(mlp())
    custom = graph.optimize(g, passes=["remove_dropout", passes.eliminate_dead])
    assert custom.count(layers.Dropout) == 0 and custom.count(layers.BatchNormalization) == 1
    with pytest.raises(ValueError, match=r"unknown pass 'nope'; valid names: \['eliminate_dead'"):
        graph.optimize(g, passes=["nope"])
    with pytest.raises(TypeError, match="must return a LayerGraph"):
        graph.optimize(g, passes=[lambda graph_: None])
    with pytest.raises(ValueError, match="does not come before it"):
        graph.LayerGraph([g.nodes[1]], [(1, 0)])


# ---------------------------------------------------------------- compiled execution
@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("dtype, rtol, atol", [("float32", 1e-5, 1e-5), ("float64", 1e-10, 1e-12)])
def test_compiled_equals_interpreted(rng, name, dtype, rtol, atol):
    build, shape = REFERENCE[name]
    model = _trained_bn(build(dtype), rng)
    x = rng.normal(size=(3,) + shape).astype(dtype)
    compiled = graph.compile(model)
    np.testing.assert_allclose(compiled(x), model(x), rtol=rtol, atol=atol)
    g = compiled.graph(x)
    assert len(g) < len(graph.trace(model, x))
    assert g.count(layers.Dropout) == 0 and g.count(layers.BatchNormalization) == 0


def _generators(model):
    return [layer._rng for layer in _all_sublayers(model) if isinstance(getattr(layer, "_rng", None), np.random.Generator)]


@pytest.mark.parametrize("name", ["functional_resnet", "transformer", "residual"])
def test_compiled_training_gives_the_interpreted_gradients(rng, name):
    build, shape = REFERENCE[name]
    model = build("float64")
    x = rng.normal(size=(2,) + shape)
    compiled = graph.compile(model)
    states = [copy.deepcopy(g.bit_generator.state) for g in _generators(model)]
    results = []
    for run, backward in ((model, model._backward), (compiled, compiled.backward)):
        for gen, state in zip(_generators(model), states):  # the same dropout masks in both runs
            gen.bit_generator.state = state
        for layer in model._all_layers():
            layer.zero_grad()
        y = run(x, training=True)
        backward(np.cos(y))
        results.append((y, [g.copy() for layer in model._all_layers() for g in layer.grads.values()]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


def test_cache_hits_misses_bounded_and_dynamic_batch(rng):
    model = mlp()
    compiled = graph.compile(model, max_entries=2)
    x8, x4 = rng.normal(size=(8, 12)).astype("float32"), rng.normal(size=(4, 12)).astype("float32")
    compiled(x8)
    compiled(x8)
    assert compiled.cache_info()[:3] == (1, 1, 1)
    compiled(x4)  # a new shape: a miss
    compiled(x8.astype("float64"))  # a new dtype: a miss, and the least recently used plan goes
    info = compiled.cache_info()
    assert (info.hits, info.misses, info.entries, info.max_entries) == (1, 3, 2, 2)
    compiled(x8)  # was evicted
    assert compiled.cache_info().misses == 4
    compiled(x4, training=True)  # the training flag is part of the key
    assert compiled.cache_info().misses == 5
    dynamic = graph.compile(model, dynamic_batch=True)
    dynamic(x8)
    np.testing.assert_allclose(dynamic(x4), model(x4), rtol=1e-5, atol=1e-6)
    assert dynamic.cache_info()[:3] == (1, 1, 1)
    assert dynamic.graph(x4).nodes[0].output_shape == (None, 12)
    compiled.cache_clear()
    assert compiled.cache_info().entries == 0
    with pytest.raises(ValueError, match="max_entries"):
        graph.compile(model, max_entries=0)


def test_plans_holding_folded_weights_are_rebuilt_when_the_weights_change(rng):
    model = _trained_bn(mlp(), rng)
    x = rng.normal(size=(4, 12)).astype("float32")
    compiled = graph.compile(model)
    compiled(x)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, np.arange(4), epochs=1, verbose=0)
    np.testing.assert_allclose(compiled(x), model(x), rtol=1e-5, atol=1e-6)
    assert compiled.cache_info().invalidations == 1
    weights = model.get_weights()
    weights[0] = weights[0] * 2
    model.set_weights(weights)
    np.testing.assert_allclose(compiled(x), model(x), rtol=1e-5, atol=1e-6)
    assert compiled.cache_info().invalidations == 2
    compiled(x)
    assert compiled.cache_info().invalidations == 2


def test_compiled_functional_with_several_inputs_and_outputs(rng):
    a, b = layers.Input((5,)), layers.Input((3,))
    h = layers.Concatenate()([layers.Dense(4)(a), layers.Dense(4)(b)])
    model = models.Model([a, b], [layers.Dense(2)(h), layers.Dense(1)(layers.Dropout(0.5)(h))])
    compiled = graph.compile(model)
    xs = [rng.normal(size=(3, 5)).astype("float32"), rng.normal(size=(3, 3)).astype("float32")]
    for got, want in zip(compiled(xs), model(xs)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="expects 2 input arrays"):
        compiled([xs[0]])
    with pytest.raises(TypeError, match="numeric array"):
        compiled([xs[0], np.array(["a", "b", "c"])])
