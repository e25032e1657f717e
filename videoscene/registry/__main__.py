"""``python -m videoscene.registry``: print every registry with its entries."""
from videoscene.registry import describe

print(describe())
