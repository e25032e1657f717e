"""Plugins that register into the videoscene registries from outside ``videoscene/`` (``custom_imports``)."""
