"""Fusion patterns of the transformer family (registered when fusenet.fusion is imported)."""

__all__ = []
