"""Optimisation passes: each a function ``LayerGraph -> LayerGraph``.

A pass never changes the graph it receives nor any layer in it: it returns a new graph that
shares the untouched layers and holds new layers where it rewrote something (folded weights are
copies). Each pass appends a line per rewrite to ``graph.notes``.

=======================  ===========  ====================================================================
pass                     mode         what it does
=======================  ===========  ====================================================================
``expand_composites``    both         ``Residual``/``TransformerEncoderBlock`` nodes become their parts
                                      (:func:`fusenet.graph.expand_composites`, what :func:`~fusenet.graph.trace`
                                      does by default)
:func:`remove_identity`  both         drops ``Identity``, ``Activation("linear")``, ``Dropout(0)``, no-op
                                      ``Reshape``/``Flatten``/``Permute`` (and, for inference,
                                      ``ActivityRegularization``)
:func:`remove_dropout`   inference    drops ``Dropout`` (and its spatial/alpha variants), ``GaussianNoise``,
                                      ``GaussianDropout``: identities at inference
:func:`merge_reshapes`   both         a run of ``Reshape``/``Flatten`` becomes one ``Reshape`` (or ``Flatten``)
:func:`fuse_patterns`    both         every single-consumer chain goes through the fusion registry
                                      (:func:`fusenet.fusion.engine.optimize`)
:func:`fold_batchnorm`   inference    ``Dense``/``ConvND``/``DepthwiseConv2D`` (no activation) followed by an
                                      inference ``BatchNormalization`` becomes one layer with folded weights
:func:`eliminate_dead`   both         drops nodes whose outputs reach no graph output
=======================  ===========  ====================================================================

Rewrites that merge nodes (fusion, folding, reshape merging) act only where the intermediate
output has a single reader and is not a graph output, so no other node loses a value it needs.
"""

from __future__ import annotations

import copy

import numpy as np

from ..fusion.base import FusedLayer
from ..fusion.engine import FusionReport, optimize as fusion_optimize
from ..fusion.folding import fold_batchnorm as _fold, fold_batchnorm_depthwise as _fold_depthwise
from ..fusion.patterns import bn_condition
from ..layers._depthwise_conv import DepthwiseConv2D
from ..layers.activation import Activation
from ..layers.convolution import Conv1D, Conv2D, Conv3D
from ..layers.core import Dense, Identity
from ..layers.normalization import BatchNormalization
from ..layers.regularization import ActivityRegularization, Dropout, GaussianDropout, GaussianNoise
from ..layers.reshaping import Flatten, Permute, Reshape
from ._graph import LayerGraph
from .tracing import expand_composites

__all__ = ["expand_composites", "remove_identity", "remove_dropout", "merge_reshapes", "fuse_patterns", "fold_batchnorm",
           "eliminate_dead", "optimize", "INFERENCE_PASSES", "TRAINING_PASSES"]


# ---------------------------------------------------------------- helpers
def _rewrite(graph, nodes, redirect, notes):
    """A new graph of ``nodes`` (in order) with every input and output reference redirected."""

    def resolve(ref):
        seen = 0
        while ref in redirect:
            ref = redirect[ref]
            seen += 1
            if seen > len(redirect):  # pragma: no cover - a cycle would be a bug in a pass
                raise RuntimeError("graph pass: cyclic redirect")
        return ref

    out = [n.replace(inputs=tuple(resolve(r) for r in n.inputs)) for n in nodes]
    return LayerGraph(out, [resolve(r) for r in graph.outputs], name=graph.name, notes=list(graph.notes) + notes)


def _single_path(node) -> bool:
    return node.kind == "layer" and not node.multi_input and len(node.output_shapes) == 1 and len(node.inputs) == 1


def _known(shape) -> bool:
    return shape is not None and all(d is not None for d in shape[1:])


def _dtype_of(graph, ref):
    return graph.node(ref[0]).dtype


def _bypass(graph, should_remove, label):
    """Drop single-input single-output nodes for which ``should_remove(node)`` holds, wiring their
    readers to their input (only when that keeps the dtype)."""
    keep, redirect, notes = [], {}, []
    for node in graph.nodes:
        if _single_path(node) and _dtype_of(graph, node.inputs[0]) == node.dtype and should_remove(node):
            redirect[(node.id, 0)] = node.inputs[0]
            notes.append(f"{label}: removed {node.name} ({node.type_name})")
            continue
        keep.append(node)
    return _rewrite(graph, keep, redirect, notes) if redirect else graph


# ---------------------------------------------------------------- identity and dropout removal
def _is_identity(node, training):
    layer = node.layer
    if layer.activity_regularizer is not None and training:
        return False  # its penalty is part of the training loss
    cls = type(layer)
    if cls is Identity:
        return True
    if cls is ActivityRegularization:
        return not training
    if cls is Activation and getattr(layer.function, "name", None) == "linear":
        return True
    if cls is Dropout and layer.rate == 0.0:
        return True
    if cls in (Reshape, Flatten):
        return _known(node.input_shapes[0]) and tuple(node.input_shapes[0]) == tuple(node.output_shapes[0])
    if cls is Permute:
        return tuple(layer.dims) == tuple(range(1, len(layer.dims) + 1))
    return False


def remove_identity(graph: LayerGraph, training: bool = False) -> LayerGraph:
    """Remove layers that return their input unchanged: ``Identity``, ``Activation("linear")``,
    ``Dropout(rate=0)``, a ``Reshape``/``Flatten`` whose output shape equals its input shape, an
    identity ``Permute``; with ``training=False`` also ``ActivityRegularization`` and the activity
    penalty of any such layer (it changes the loss, not the outputs). Exact in both modes."""
    return _bypass(graph, lambda node: _is_identity(node, training), "remove_identity")


_DROPOUTS = (Dropout, GaussianNoise, GaussianDropout)


def remove_dropout(graph: LayerGraph) -> LayerGraph:
    """Remove every dropout-like layer (``Dropout``, ``SpatialDropout1D/2D/3D``, ``AlphaDropout``,
    ``GaussianNoise``, ``GaussianDropout``): each is the identity at inference. The result is for
    inference only."""
    return _bypass(graph, lambda node: isinstance(node.layer, _DROPOUTS), "remove_dropout")


# ---------------------------------------------------------------- chains
def _chains(graph, member, consumers=None):
    """Maximal runs ``[n0, n1, ...]`` of single-path nodes accepted by ``member`` where each node's output is
    read only by the next node (and is not a graph output)."""
    consumers = graph.consumers() if consumers is None else consumers
    index = {n.id: n for n in graph.nodes}
    outputs = set(graph.outputs)

    def sole_reader(node):
        ref = (node.id, 0)
        readers = consumers.get(ref, [])
        if ref in outputs or len(readers) != 1:
            return None
        nxt = index[readers[0]]
        return nxt if _single_path(nxt) and member(nxt) else None

    in_chain, chains = set(), []
    for node in graph.nodes:
        if node.id in in_chain or not _single_path(node) or not member(node):
            continue
        prev = index[node.inputs[0][0]]
        if _single_path(prev) and member(prev) and sole_reader(prev) is node:
            continue  # not the head of its chain
        chain = [node]
        nxt = sole_reader(node)
        while nxt is not None:
            chain.append(nxt)
            nxt = sole_reader(nxt)
        in_chain.update(n.id for n in chain)
        chains.append(chain)
    return chains


def _replace_chains(graph, replacements, notes):
    """``replacements``: list of (chain, [new nodes]) where the new nodes take the chain's place (the last
    one produces what the chain's last node produced)."""
    drop, insert_after, redirect = set(), {}, {}
    for chain, new_nodes in replacements:
        drop.update(n.id for n in chain)
        insert_after[chain[-1].id] = new_nodes
        if new_nodes[-1].id != chain[-1].id:
            redirect[(chain[-1].id, 0)] = (new_nodes[-1].id, 0)
    nodes = []
    for node in graph.nodes:
        if node.id in insert_after:
            nodes.extend(insert_after[node.id])
        if node.id not in drop:
            nodes.append(node)
    return _rewrite(graph, nodes, redirect, notes)


def merge_reshapes(graph: LayerGraph) -> LayerGraph:
    """Replace each run of two or more ``Reshape``/``Flatten`` nodes (single reader each) by one layer
    reshaping straight to the run's final shape: ``Flatten`` when that is ``(batch, n)``, else
    ``Reshape``. Runs whose final per-sample shape is not fully known are kept. Exact in both modes."""
    member = lambda node: type(node.layer) in (Reshape, Flatten)  # noqa: E731
    replacements, notes, next_id = [], [], graph.next_id()
    for chain in _chains(graph, member):
        if len(chain) < 2 or not _known(chain[-1].output_shapes[0]):
            continue
        final = tuple(chain[-1].output_shapes[0])
        name = f"{chain[0].name}_to_{chain[-1].name}"
        layer = Flatten(name=name, dtype=chain[-1].dtype) if len(final) == 2 else Reshape(final[1:], name=name,
                                                                                           dtype=chain[-1].dtype)
        layer._build_for(chain[0].input_shapes[0], chain[-1].dtype)
        node = chain[0].replace(id=next_id, layer=layer, output_shapes=chain[-1].output_shapes,
                                dtype=chain[-1].dtype, sources=tuple(n.layer for n in chain))
        next_id += 1
        replacements.append((chain, [node]))
        notes.append(f"merge_reshapes: {' -> '.join(n.name for n in chain)} became {type(layer).__name__}{final[1:]}")
    return _replace_chains(graph, replacements, notes) if replacements else graph


def _covered(layer) -> int:
    """How many layers of the source run one layer returned by the fusion engine replaces."""
    return len(layer.source_layers) if isinstance(layer, FusedLayer) else 1


def fuse_patterns(graph: LayerGraph, training: bool = False, report: FusionReport | None = None) -> LayerGraph:
    """Run every maximal single-consumer chain through the fusion registry
    (:func:`fusenet.fusion.engine.optimize`): runs matching a registered pattern become fused layers
    (holding copies of the replaced layers; the originals are untouched), composite layers are rebuilt
    around their fused insides. ``training=False`` gives inference layers (BatchNorm folded, dropout
    dropped inside fused runs); ``training=True`` fused layers that train their own copies of the
    parameters. ``report`` (a :class:`~fusenet.fusion.FusionReport`) collects what matched and why not."""
    replacements, notes, next_id = [], [], graph.next_id()
    for k, chain in enumerate(_chains(graph, lambda node: True)):
        layers = [n.layer for n in chain]
        new_layers = fusion_optimize(layers, training=training, report=report, prefix=f"{chain[0].name}:")
        if len(new_layers) == len(layers) and all(a is b for a, b in zip(new_layers, layers)):
            continue
        if sum(_covered(layer) for layer in new_layers) != len(layers):  # pragma: no cover - engine contract
            continue
        new_nodes, pos = [], 0
        for layer in new_layers:
            span = chain[pos:pos + _covered(layer)]
            pos += len(span)
            if len(span) == 1 and span[0].layer is layer:
                new_nodes.append(span[0])
                continue
            prev = new_nodes[-1] if new_nodes else None
            inputs = ((prev.id, 0),) if prev is not None else span[0].inputs
            new_nodes.append(span[0].replace(id=next_id, layer=layer, inputs=inputs, output_shapes=span[-1].output_shapes,
                                             dtype=span[-1].dtype, sources=tuple(n.layer for n in span)))
            next_id += 1
            notes.append(f"fuse_patterns: {' + '.join(n.name for n in span)} became {layer.name} ({type(layer).__name__})")
        # nodes kept as they were inside a rewritten chain must read from their new predecessor
        for i in range(1, len(new_nodes)):
            if new_nodes[i].inputs != ((new_nodes[i - 1].id, 0),):
                new_nodes[i] = new_nodes[i].replace(inputs=((new_nodes[i - 1].id, 0),))
        replacements.append((chain, new_nodes))
    return _replace_chains(graph, replacements, notes) if replacements else graph


# ---------------------------------------------------------------- BatchNorm folding
_FOLD_TARGETS = (Dense, Conv1D, Conv2D, Conv3D, DepthwiseConv2D)


def _linear(layer) -> bool:
    fn = getattr(layer, "activation", None)
    return fn is None or getattr(fn, "name", None) == "linear"


def _folded_copy(producer, bn):
    """A copy of ``producer`` whose kernel and bias absorb the inference BatchNormalization ``bn``."""
    kernel_name = "depthwise_kernel" if isinstance(producer, DepthwiseConv2D) else "kernel"
    kernel = producer._params[kernel_name]
    bias = producer._params.get("bias")
    stats = (bn._params.get("gamma"), bn._params.get("beta"), bn._state["moving_mean"], bn._state["moving_variance"])
    gamma, beta, mean, var = (None if a is None else np.asarray(a).reshape(-1) for a in stats)
    fold = _fold_depthwise if kernel_name == "depthwise_kernel" else _fold
    new_kernel, new_bias = fold(kernel, bias, gamma, beta, mean, var, bn.epsilon)
    layer = copy.deepcopy(producer)
    layer._cache = None
    layer.name = f"{producer.name}_bn_folded"
    if bias is None:
        layer.use_bias = True
        layer.add_weight("bias", new_bias.shape, "zeros")
    layer._params[kernel_name][...] = new_kernel
    layer._params["bias"][...] = new_bias
    return layer


def fold_batchnorm(graph: LayerGraph) -> LayerGraph:
    """Fold each inference ``BatchNormalization`` into the ``Dense``/``Conv1D``/``Conv2D``/``Conv3D``/
    ``DepthwiseConv2D`` (without activation) that feeds it, when that layer's output is read only by the BN:
    ``kernel' = kernel * s``, ``bias' = (bias - moving_mean) * s + beta`` with
    ``s = gamma / sqrt(moving_variance + epsilon)`` (:func:`fusenet.fusion.folding.fold_batchnorm`).
    The BN must normalise the channels (last) axis and have no activity regularizer. The new layer is a
    copy; the model's layers keep their weights. Inference only (training BN uses batch statistics)."""
    consumers, outputs = graph.consumers(), set(graph.outputs)
    replacements, notes, next_id = [], [], graph.next_id()
    for node in graph.nodes:
        if not (_single_path(node) and isinstance(node.layer, BatchNormalization)):
            continue
        bn = node.layer
        src_ref = node.inputs[0]
        producer_node = graph.node(src_ref[0])
        producer = producer_node.layer
        if (not _single_path(producer_node) or type(producer) not in _FOLD_TARGETS or not _linear(producer)
                or src_ref in outputs or len(consumers.get(src_ref, ())) != 1 or producer_node.dtype != node.dtype
                or bn.activity_regularizer is not None or producer.activity_regularizer is not None
                or bn_condition(bn, training=False) is not None or not producer.built):
            continue
        layer = _folded_copy(producer, bn)
        new = producer_node.replace(id=next_id, layer=layer, output_shapes=node.output_shapes,
                                    sources=(producer, bn))
        next_id += 1
        replacements.append(([producer_node, node], [new]))
        notes.append(f"fold_batchnorm: {bn.name} folded into {producer.name} -> {layer.name}")
    return _replace_chains(graph, replacements, notes) if replacements else graph


# ---------------------------------------------------------------- dead nodes
def eliminate_dead(graph: LayerGraph) -> LayerGraph:
    """Remove the layer nodes none of whose outputs reaches a graph output (input nodes always stay)."""
    live = {src for src, _ in graph.outputs}
    for node in reversed(graph.nodes):
        if node.id in live:
            live.update(src for src, _ in node.inputs)
    dead = [n for n in graph.nodes if n.kind == "layer" and n.id not in live]
    if not dead:
        return graph
    notes = [f"eliminate_dead: removed {n.name} ({n.type_name})" for n in dead]
    return _rewrite(graph, [n for n in graph.nodes if n.kind == "input" or n.id in live], {}, notes)


# ---------------------------------------------------------------- pipelines
#: the default inference pipeline: whole composite layers are offered to the fusion registry first (a
#: ``TransformerEncoderBlock`` becomes one fused block), what remains is expanded into its parts, then the
#: parts are cleaned up, fused and folded
INFERENCE_PASSES = ("fuse_patterns", "expand_composites", "remove_identity", "remove_dropout", "merge_reshapes",
                    "fuse_patterns", "fold_batchnorm", "eliminate_dead")
#: the default training pipeline: only exact, structural rewrites over the model's own layers
TRAINING_PASSES = ("expand_composites", "remove_identity", "merge_reshapes", "eliminate_dead")

_PASSES = {
    "expand_composites": lambda g, training: expand_composites(g),
    "remove_identity": lambda g, training: remove_identity(g, training=training),
    "remove_dropout": lambda g, training: g if training else remove_dropout(g),
    "merge_reshapes": lambda g, training: merge_reshapes(g),
    "fuse_patterns": lambda g, training: fuse_patterns(g, training=training),
    "fold_batchnorm": lambda g, training: g if training else fold_batchnorm(g),
    "eliminate_dead": lambda g, training: eliminate_dead(g),
}


def optimize(graph: LayerGraph, training: bool = False, passes=None) -> LayerGraph:
    """Apply ``passes`` (names or functions ``graph -> graph``) in order; by default
    :data:`INFERENCE_PASSES` or, with ``training=True``, :data:`TRAINING_PASSES` (the exact, structural
    ones: the training graph runs the model's own layers, so gradients land in the model)."""
    if passes is None:
        passes = TRAINING_PASSES if training else INFERENCE_PASSES
    for p in passes:
        if isinstance(p, str):
            if p not in _PASSES:
                raise ValueError(f"optimize: unknown pass {p!r}; valid names: {sorted(_PASSES)}")
            graph = _PASSES[p](graph, bool(training))
        elif callable(p):
            graph = p(graph)
            if not isinstance(graph, LayerGraph):
                raise TypeError(f"optimize: the pass {p!r} must return a LayerGraph. Received: {graph!r}")
        else:
            raise TypeError(f"optimize: expected pass names or functions. Received: {p!r}")
    return graph
