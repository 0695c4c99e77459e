"""Runnable demos: ``python -m fusenet.examples.NAME``."""
