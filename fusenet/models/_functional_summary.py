"""The summary table of a functional model, with a "Connected to" column (private; see ``Functional.summary``)."""

from __future__ import annotations

from ._summary import readable_size

__all__ = ["format_functional_summary"]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def format_functional_summary(model, line_length=None, positions=None, show_trainable=False) -> str:
    """One row per layer: ``name (Class)``, output shape, parameter count, and its inputs as
    ``source[0][output index]`` (Keras notation; one per line), then the parameter totals."""
    connections = model.connections()
    shapes = model._layer_output_shapes()
    rows = []
    for layer, shape in zip(model.layers, shapes):
        sources = [f"{name}[0][{port}]" for name, port in connections[layer.name]] or ["-"]
        row = [f"{layer.name} ({type(layer).__name__})", str(tuple(shape)), f"{layer.count_params():,}", sources]
        if show_trainable:
            row.append("Y" if layer.trainable else "N")
        rows.append(row)
    header = ["Layer (type)", "Output Shape", "Param #", "Connected to"] + (["Trainable"] if show_trainable else [])
    natural = []
    for i in range(len(header)):
        cells = [max(len(c) for c in r[i]) if isinstance(r[i], list) else len(r[i]) for r in rows]
        natural.append(max([len(header[i])] + cells) + 2)
    natural[0] = max(natural[0], 29)
    if line_length is None:
        line_length = max(65, sum(natural))
    if positions is None:
        total = sum(natural)
        edges, acc = [], 0
        for w in natural:
            acc += w
            edges.append(round(acc * line_length / total))
    else:
        positions = list(positions)
        if len(positions) != len(header):
            raise ValueError(
                f"{model.describe()}.summary: expected {len(header)} positions (one per column). "
                f"Received: positions={positions}"
            )
        edges = [round(p * line_length) if p <= 1 else int(p) for p in positions]
    widths = [edges[0]] + [edges[i] - edges[i - 1] for i in range(1, len(edges))]

    def line(cells):
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths)):
            text = _fit(cell, width - 1)
            parts.append(text.rjust(width - 1) + " " if i == 2 else text.ljust(width))
        return (" " + "".join(parts)).rstrip()

    out = [f'Model: "{model.name}"', "_" * line_length, line(header), "=" * line_length]
    for i, row in enumerate(rows):
        sources = row[3]
        out.append(line(row[:3] + [sources[0]] + row[4:]))
        for extra in sources[1:]:
            out.append(line(["", "", ""] + [extra] + [""] * (len(row) - 4)).rstrip())
        replaced = getattr(model.layers[i], "describe_fusion", None)
        if callable(replaced):  # a fused layer: say what it replaced
            out.append(" " + _fit(f"  fuses {replaced()}", line_length - 1))
        if i < len(rows) - 1:
            out.append("")
    out.append("=" * line_length)
    trainable = model.trainable_weights
    non_trainable = model.non_trainable_weights
    n_tr = sum(w.size for w in trainable)
    n_nt = sum(w.size for w in non_trainable)
    b_tr = sum(w.nbytes for w in trainable)
    b_nt = sum(w.nbytes for w in non_trainable)
    out.append(f"Total params: {n_tr + n_nt:,} ({readable_size(b_tr + b_nt)})")
    out.append(f"Trainable params: {n_tr:,} ({readable_size(b_tr)})")
    out.append(f"Non-trainable params: {n_nt:,} ({readable_size(b_nt)})")
    optimizer = getattr(model, "optimizer", None)
    state = None
    if optimizer is not None and getattr(optimizer, "built", False) and callable(getattr(optimizer, "get_state", None)):
        state = optimizer.get_state()
    if state is not None and state.get("slots"):
        n_opt = sum(a.size for a in state["slots"])
        out.append(f"Optimizer params: {n_opt:,} ({readable_size(sum(a.nbytes for a in state['slots']))})")
    out.append("_" * line_length)
    return "\n".join(out)
