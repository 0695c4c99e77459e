"""The Keras-style summary table of a model (private; see ``Model.summary``)."""

from __future__ import annotations

__all__ = ["format_summary", "readable_size"]


def readable_size(nbytes: float) -> str:
    """``1234`` -> ``"1.21 KB"`` (powers of 1024, as Keras)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024.0
    return f"{nbytes:.2f} TB"  # pragma: no cover - the loop returns


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def format_summary(model, line_length=None, positions=None, show_trainable=False) -> str:
    """The table: one row per layer (``name (Class)``, output shape, parameter count), then totals.

    ``line_length`` fixes the table's width (default: wide enough for every row, at least 65);
    ``positions`` gives the right edge of each column, as fractions of the width or as characters.
    """
    layers = model.layers
    built = model.built
    shapes = model._layer_output_shapes() if built else [None] * len(layers)
    rows = []
    for layer, shape in zip(layers, shapes):
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        row = [f"{layer.name} ({type(layer).__name__})", "?" if shape is None else str(tuple(shape)), params]
        if show_trainable:
            row.append("Y" if layer.trainable else "N")
        rows.append(row)
    header = ["Layer (type)", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    natural = [max([len(header[i])] + [len(r[i]) for r in rows]) + 2 for i in range(len(header))]
    natural[0] = max(natural[0], 29)
    natural[1] = max(natural[1], 26)
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
    for i, (row, layer) in enumerate(zip(rows, layers)):
        out.append(line(row))
        replaced = getattr(layer, "describe_fusion", None)
        if callable(replaced):  # a fused layer: say what it replaced
            out.append(" " + _fit(f"  fuses {replaced()}", line_length - 1))
        if i < len(rows) - 1:
            out.append("")
    out.append("=" * line_length)
    if built:
        trainable = model.trainable_weights
        non_trainable = model.non_trainable_weights
        n_tr = sum(w.size for w in trainable)
        n_nt = sum(w.size for w in non_trainable)
        b_tr = sum(w.nbytes for w in trainable)
        b_nt = sum(w.nbytes for w in non_trainable)
        out.append(f"Total params: {n_tr + n_nt:,} ({readable_size(b_tr + b_nt)})")
        out.append(f"Trainable params: {n_tr:,} ({readable_size(b_tr)})")
        out.append(f"Non-trainable params: {n_nt:,} ({readable_size(b_nt)})")
    else:
        out.append("Total params: 0 (unbuilt)")
        out.append("Trainable params: 0 (unbuilt)")
        out.append("Non-trainable params: 0 (unbuilt)")
    optimizer = getattr(model, "optimizer", None)
    state = None
    if optimizer is not None and getattr(optimizer, "built", False) and callable(getattr(optimizer, "get_state", None)):
        state = optimizer.get_state()
    if state is not None and state.get("slots"):
        n_opt = sum(a.size for a in state["slots"])
        out.append(f"Optimizer params: {n_opt:,} ({readable_size(sum(a.nbytes for a in state['slots']))})")
    out.append("_" * line_length)
    return "\n".join(out)
