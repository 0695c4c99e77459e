"""Layer graphs: tracing a model into a static graph, optimisation passes, compiled execution.

- :func:`trace` turns a ``Sequential``, a functional ``Model``, a ``Layer`` or a list of layers into a
  :class:`LayerGraph` (nodes in topological order, with shapes and dtypes; composite layers expanded).
- :mod:`fusenet.graph.passes` rewrites graphs (identity and dropout removal, reshape merging, pattern
  fusion, BatchNorm folding, dead-node elimination); :func:`~fusenet.graph.passes.optimize` chains them.
- :func:`compile` returns a callable running the optimised graph, with one cached plan per input
  shape/dtype, and an interpreted fallback for models that cannot be traced. A plan is generated
  Python source (``compiled.code``): inference plans write into arrays planned by liveness and
  reused across calls, with the shape-specialised work (convolution geometry, GEMM layouts, folded
  weights) done once; training plans run forward and backward over the model's own layers
  (``compiled.train_step``, or ``model.compile(..., jit_compile=True)`` for ``fit``).

``graph.to_dot()`` gives Graphviz text and ``print(graph)`` a table, before and after the passes.
"""

from . import passes
from ._graph import GraphNode, LayerGraph, TensorSpec, TraceError
from ._program import Program
from .compiler import CacheInfo, CompiledModel, CompileFallbackWarning, compile
from .passes import optimize
from .tracing import chain_graph, expand_composites, register_structure, trace

__all__ = ["trace", "LayerGraph", "GraphNode", "TensorSpec", "TraceError", "Program", "passes", "optimize",
           "compile", "CompiledModel", "CompileFallbackWarning", "CacheInfo", "register_structure", "chain_graph",
           "expand_composites"]
