"""The Keras-style summary table of a model (private; see ``Model.summary``).

One table layout serves Sequential and functional models: a functional model adds a "Connected to"
column whose cells hold one input per line (Keras notation ``source[0][output index]``).
"""

from __future__ import annotations

__all__ = ["format_summary", "format_functional_summary", "readable_size"]


def readable_size(nbytes: float) -> str:
    """``1234`` -> ``"1.21 KB"`` (powers of 1024, as Keras)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024.0
    return f"{nbytes:.2f} TB"  # pragma: no cover - the loop returns


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _lines(cell) -> list:
    return cell if isinstance(cell, list) else [cell]


def _column_edges(model, header, rows, natural, line_length, positions):
    """``(line_length, widths)`` of the columns: natural widths scaled to ``line_length``, or ``positions``."""
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
    return line_length, [edges[0]] + [edges[i] - edges[i - 1] for i in range(1, len(edges))]


def _totals(model, built: bool) -> list:
    if not built:
        return ["Total params: 0 (unbuilt)", "Trainable params: 0 (unbuilt)", "Non-trainable params: 0 (unbuilt)"]
    trainable, non_trainable = model.trainable_weights, model.non_trainable_weights
    n_tr, n_nt = sum(w.size for w in trainable), sum(w.size for w in non_trainable)
    b_tr, b_nt = sum(w.nbytes for w in trainable), sum(w.nbytes for w in non_trainable)
    out = [f"Total params: {n_tr + n_nt:,} ({readable_size(b_tr + b_nt)})",
           f"Trainable params: {n_tr:,} ({readable_size(b_tr)})",
           f"Non-trainable params: {n_nt:,} ({readable_size(b_nt)})"]
    optimizer = getattr(model, "optimizer", None)
    state = None
    if optimizer is not None and getattr(optimizer, "built", False) and callable(getattr(optimizer, "get_state", None)):
        state = optimizer.get_state()
    if state is not None and state.get("slots"):
        n_opt = sum(a.size for a in state["slots"])
        out.append(f"Optimizer params: {n_opt:,} ({readable_size(sum(a.nbytes for a in state['slots']))})")
    return out


def _table(model, header, rows, built, line_length, positions, min_widths) -> str:
    """The table of ``rows`` (one per layer of ``model.layers``; a cell may be a list of lines)."""
    layers = model.layers
    natural = [max([len(header[i])] + [max(map(len, _lines(r[i]))) for r in rows]) + 2 for i in range(len(header))]
    for i, width in enumerate(min_widths):
        natural[i] = max(natural[i], width)
    line_length, widths = _column_edges(model, header, rows, natural, line_length, positions)

    def line(cells):
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths)):
            text = _fit(cell, width - 1)
            parts.append(text.rjust(width - 1) + " " if i == 2 else text.ljust(width))
        return (" " + "".join(parts)).rstrip()

    out = [f'Model: "{model.name}"', "_" * line_length, line(header), "=" * line_length]
    for i, (row, layer) in enumerate(zip(rows, layers)):
        cells = [_lines(c) for c in row]
        for k in range(max(len(c) for c in cells)):  # a row of several lines: one input per line
            out.append(line([c[k] if k < len(c) else "" for c in cells]))
        replaced = getattr(layer, "describe_fusion", None)
        if callable(replaced):  # a fused layer: say what it replaced
            out.append(" " + _fit(f"  fuses {replaced()}", line_length - 1))
        if i < len(rows) - 1:
            out.append("")
    out.append("=" * line_length)
    out.extend(_totals(model, built))
    out.append("_" * line_length)
    return "\n".join(out)


def _row(layer, shape, show_trainable, *extra) -> list:
    params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
    row = [f"{layer.name} ({type(layer).__name__})", "?" if shape is None else str(tuple(shape)), params, *extra]
    if show_trainable:
        row.append("Y" if layer.trainable else "N")
    return row


def format_summary(model, line_length=None, positions=None, show_trainable=False) -> str:
    """The table: one row per layer (``name (Class)``, output shape, parameter count), then totals.

    ``line_length`` fixes the table's width (default: wide enough for every row, at least 65);
    ``positions`` gives the right edge of each column, as fractions of the width or as characters.
    """
    layers, built = model.layers, model.built
    shapes = model._layer_output_shapes() if built else [None] * len(layers)
    rows = [_row(layer, shape, show_trainable) for layer, shape in zip(layers, shapes)]
    header = ["Layer (type)", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    return _table(model, header, rows, built, line_length, positions, min_widths=(29, 26))


def format_functional_summary(model, line_length=None, positions=None, show_trainable=False) -> str:
    """One row per layer: ``name (Class)``, output shape, parameter count, and its inputs as
    ``source[0][output index]`` (Keras notation; one per line), then the parameter totals."""
    connections = model.connections()
    rows = [_row(layer, shape, show_trainable, [f"{name}[0][{port}]" for name, port in connections[layer.name]] or ["-"])
            for layer, shape in zip(model.layers, model._layer_output_shapes())]
    header = ["Layer (type)", "Output Shape", "Param #", "Connected to"] + (["Trainable"] if show_trainable else [])
    return _table(model, header, rows, True, line_length, positions, min_widths=(29,))
