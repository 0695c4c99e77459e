"""Atomic writes for interop (the shared implementation is :mod:`fusenet._atomic`)."""

from .._atomic import atomic_write

__all__ = ["atomic_write"]
