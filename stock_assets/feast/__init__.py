"""Feast over the gold features: the store's core (feature_store.py) and one module per asset."""
