"""Per-layer profiling: where a model's time goes, and what fusion would save.

``profile(model, x, y=None, training=False, repeats=10)`` returns a :class:`ProfileReport`
(``print`` it; ``to_dict()``, ``to_csv()``). ``python -m fusenet.profiling MODEL_FILE --batch-size N``
prints the report of a model saved with ``model.save``. FLOP counts per layer type live in
:mod:`fusenet.profiling.flops`.
"""

from . import flops
from .flops import backward_flops, forward_flops, register_flops
from .profiler import profile
from .report import FusionRun, LayerProfile, ProfileReport, TimeStats

__all__ = ["profile", "ProfileReport", "LayerProfile", "FusionRun", "TimeStats", "flops", "forward_flops",
           "backward_flops", "register_flops"]
