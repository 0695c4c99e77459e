"""Named errors for wrong *state* (bad values and shapes raise ``ValueError``, bad types ``TypeError``)."""

__all__ = ["FusenetError", "NotBuiltError", "NotCompiledError", "BackwardBeforeForwardError", "ModelFileError"]


class FusenetError(Exception):
    """Base class of fusenet's own errors."""


class NotBuiltError(FusenetError, RuntimeError):
    """A layer or model was used in a way that needs its weights before it was built."""


class NotCompiledError(FusenetError, RuntimeError):
    """``fit``/``evaluate``/``train_on_batch`` was called before ``compile``."""


class BackwardBeforeForwardError(FusenetError, RuntimeError):
    """``backward`` was called without a preceding ``forward(..., training=True)``."""


class ModelFileError(FusenetError, ValueError):
    """A saved model or weights file is missing, truncated, corrupt or hostile."""
