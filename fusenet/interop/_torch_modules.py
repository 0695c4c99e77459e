"""Three small ``torch.nn`` modules that let a ``torch.nn.Sequential`` express what fusenet layers do.

- :class:`RNNOutput` follows an ``nn.LSTM``/``nn.GRU`` (``batch_first=True``) in a Sequential: the
  recurrent module returns ``(output, state)``; this keeps ``output`` (``return_sequences=True``) or
  its last step ``output[:, -1]`` (Keras's ``return_sequences=False``).
- :class:`ToChannelsFirst` / :class:`ToChannelsLast` move the last axis to axis 1 and back, where a
  model passes from a sequence part (``(N, T, F)``, channels last) to a convolutional part
  (``(N, C, L)``, channels first) or back.

Imported only when torch is installed (by :func:`fusenet.interop.to_torch` and
:func:`fusenet.interop.from_torch`, or as ``fusenet.interop.RNNOutput``, ...).
"""

from __future__ import annotations

from torch import nn

__all__ = ["RNNOutput", "ToChannelsFirst", "ToChannelsLast"]


class RNNOutput(nn.Module):
    """``(output, state) -> output`` (``return_sequences``) or ``output[:, -1]`` (the last step)."""

    def __init__(self, return_sequences: bool = False):
        super().__init__()
        self.return_sequences = bool(return_sequences)

    def forward(self, result):
        output = result[0] if isinstance(result, (tuple, list)) else result
        return output if self.return_sequences else output[:, -1]

    def extra_repr(self) -> str:
        return f"return_sequences={self.return_sequences}"


class ToChannelsFirst(nn.Module):
    """``(N, ..., C) -> (N, C, ...)``."""

    def forward(self, x):
        return x.movedim(-1, 1)


class ToChannelsLast(nn.Module):
    """``(N, C, ...) -> (N, ..., C)``."""

    def forward(self, x):
        return x.movedim(1, -1)
