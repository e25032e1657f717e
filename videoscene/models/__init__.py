"""Trainable models the Runner builds (``MODELS``): one per training stage."""
