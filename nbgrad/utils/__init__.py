"""``nbgrad.utils``: helpers around training (data loading)."""
