"""Fused layers of the conv family."""

__all__ = []
