"""Fused layers of the transformer family."""

__all__ = []
