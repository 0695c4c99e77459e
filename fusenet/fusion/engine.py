"""The pattern registry and the matcher behind ``LayerBuilder.optimize_sequence`` and ``report``.

A :class:`Pattern` is data: a run of layer specs (which layer types, with which properties), a
``condition`` that may refuse a matching run with a reason, and a ``factory`` that builds the
fused layer. Matching is greedy, longest pattern first, left to right; composite layers
(``Residual``) are matched as a whole first and otherwise rebuilt around their optimised
inner sequences. A run that fails a condition is left untouched and the report says why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..layers.base import Layer

__all__ = ["LayerSpec", "Pattern", "register_pattern", "unregister_pattern", "registered_patterns",
           "FusionReport", "FusionEntry", "optimize", "register_composite"]


class LayerSpec:
    """One position of a pattern: ``types`` (a class or tuple of classes) and an optional
    ``test(layer) -> bool`` on its configuration; ``label`` names it in reports."""

    def __init__(self, types, test: Callable[[Layer], bool] | None = None, label: str | None = None):
        self.types = types if isinstance(types, tuple) else (types,)
        self.test = test
        self.label = label or "/".join(t.__name__ for t in self.types)

    def __call__(self, layer) -> bool:
        return isinstance(layer, self.types) and (self.test is None or bool(self.test(layer)))

    def __repr__(self):
        return self.label


@dataclass
class Pattern:
    """A fusion pattern: ``sequence`` of :class:`LayerSpec` (or classes), ``factory(layers, training)``
    building the fused layer, and ``condition(layers, training) -> reason or None``."""

    name: str
    sequence: tuple
    factory: Callable
    condition: Callable | None = None
    description: str = ""

    def __post_init__(self):
        self.sequence = tuple(s if isinstance(s, LayerSpec) else LayerSpec(s) for s in self.sequence)
        if not self.sequence:
            raise ValueError(f"Pattern {self.name!r}: expected a non-empty sequence of layer specs.")

    def __len__(self):
        return len(self.sequence)

    def first_mismatch(self, run):
        """Index of the first layer of ``run`` that does not fit, or ``None`` when all fit."""
        for i, (spec, layer) in enumerate(zip(self.sequence, run)):
            if not spec(layer):
                return i
        return None if len(run) >= len(self.sequence) else len(run)


_PATTERNS: list[Pattern] = []


def register_pattern(pattern: Pattern) -> Pattern:
    """Add ``pattern`` to the registry (a pattern of the same name is replaced)."""
    if not isinstance(pattern, Pattern):
        raise TypeError(f"register_pattern: expected a fusenet.fusion.Pattern. Received: {pattern!r}")
    unregister_pattern(pattern.name)
    _PATTERNS.append(pattern)
    return pattern


def unregister_pattern(name: str) -> None:
    """Remove the pattern called ``name`` (no error when absent)."""
    _PATTERNS[:] = [p for p in _PATTERNS if p.name != name]


def registered_patterns() -> list[Pattern]:
    """The registered patterns, longest first (the order in which they are tried)."""
    return sorted(_PATTERNS, key=len, reverse=True)


# composite layers whose inner sequences are optimised: class -> rebuild(layer, optimize_fn) -> new layer or None
_COMPOSITES: dict[type, Callable] = {}


def register_composite(cls: type, rebuild: Callable) -> None:
    """``rebuild(layer, optimize_list)`` returns a new composite with optimised inner layers, or None."""
    _COMPOSITES[cls] = rebuild


# ---------------------------------------------------------------- the report
@dataclass
class FusionEntry:
    """One line of a :class:`FusionReport`."""

    position: str
    layers: list
    pattern: str
    fused: bool
    reason: str = ""
    saving: str = ""

    def to_dict(self):
        return {"position": self.position, "layers": list(self.layers), "pattern": self.pattern, "fused": self.fused,
                "reason": self.reason, "saving": self.saving}


@dataclass
class FusionReport:
    """Which runs matched which pattern (with the estimated saving), and which did not, and why."""

    entries: list = field(default_factory=list)

    @property
    def fused(self):
        return [e for e in self.entries if e.fused]

    @property
    def not_fused(self):
        return [e for e in self.entries if not e.fused]

    def to_dict(self):
        return {"entries": [e.to_dict() for e in self.entries], "fused_runs": len(self.fused)}

    def __str__(self):
        lines = [f"Fusion report: {len(self.fused)} run(s) fused, {len(self.not_fused)} note(s)"]
        for e in self.entries:
            mark = "FUSED " if e.fused else "kept  "
            what = " -> ".join(e.layers)
            lines.append(f"  [{e.position}] {mark} {what}")
            lines.append(f"        pattern: {e.pattern}" + (f"; {e.saving}" if e.saving else ""))
            if e.reason:
                lines.append(f"        why: {e.reason}")
        return "\n".join(lines)

    __repr__ = __str__


def _names(run):
    return [f"{type(layer).__name__}({layer.name})" for layer in run]


def _saving(run):
    """A rough estimate: each replaced boundary saves one write and one read of an intermediate array."""
    shape = run[0].build_input_shape
    if shape is None:
        return f"{len(run) - 1} intermediate array(s) fewer"
    total = 0
    try:
        for layer in run[:-1]:
            shape = tuple(layer.compute_output_shape(shape))
            total += int(np.prod([d or 1 for d in shape[1:]]))
    except Exception:  # an estimate only; a layer that cannot say its shape gets the count alone
        return f"{len(run) - 1} intermediate array(s) fewer"
    return f"{len(run) - 1} intermediate array(s) fewer ({total} values per sample not written and read back)"


# ---------------------------------------------------------------- the matcher
def optimize(layers, training: bool = False, report: FusionReport | None = None, prefix: str = ""):
    """Replace every matching run of ``layers`` by its fused layer; the rest are the same objects."""
    layers = list(layers)
    patterns = registered_patterns()
    out, i = [], 0
    while i < len(layers):
        fused = None
        for pattern in patterns:
            run = layers[i:i + len(pattern)]
            if pattern.first_mismatch(run) is not None:
                continue
            reason = _check(pattern, run, training)
            if reason:
                if report is not None:
                    report.entries.append(FusionEntry(f"{prefix}{i}", _names(run), pattern.name, False, reason))
                continue
            fused = pattern.factory(run, training)
            if report is not None:
                report.entries.append(FusionEntry(f"{prefix}{i}", _names(run), pattern.name, True, "", _saving(run)))
            i += len(run)
            break
        if fused is not None:
            out.append(fused)
            continue
        layer = layers[i]
        rebuilt = _rebuild_composite(layer, training, report, f"{prefix}{i}.")
        if rebuilt is None and report is not None:
            _explain_miss(layers, i, patterns, report, prefix)
        out.append(layer if rebuilt is None else rebuilt)
        i += 1
    return out


def _check(pattern, run, training):
    dtypes = {layer.dtype for layer in run if layer.dtype is not None}
    if len(dtypes) > 1:
        return f"the layers compute in different dtypes {sorted(dtypes)}"
    if pattern.condition is None:
        return None
    return pattern.condition(run, training)


def _rebuild_composite(layer, training, report, prefix):
    for cls, rebuild in _COMPOSITES.items():
        if isinstance(layer, cls):
            return rebuild(layer, lambda inner: optimize(inner, training, report, prefix))
    return None


def _explain_miss(layers, i, patterns, report, prefix):
    layer = layers[i]
    for pattern in patterns:
        if not pattern.sequence[0](layer):
            continue
        run = layers[i:i + len(pattern)]
        k = pattern.first_mismatch(run)
        if k is None:
            continue  # matched but refused: already reported
        if k >= len(run):
            why = f"the sequence ends after {_names(run)[-1]}; pattern {pattern.name} needs {pattern.sequence[k].label} next"
        else:
            why = f"{_names(run)[k]} is not {pattern.sequence[k].label} (as pattern {pattern.name} needs at that place)"
        report.entries.append(FusionEntry(f"{prefix}{i}", _names(run[:k + 1]), pattern.name, False, why))
        return


def copy_composite(layer, **replacements):
    """A deep copy of ``layer`` with some attributes replaced (helper for composite rebuilds)."""
    clone = copy.deepcopy(layer)
    for key, value in replacements.items():
        setattr(clone, key, value)
    return clone
