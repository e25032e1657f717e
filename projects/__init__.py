"""Plugins registering into the videoscene registries from outside ``videoscene/``."""
