"""Fusion patterns of the conv family (registered when fusenet.fusion is imported)."""

__all__ = []
