"""Data: manifests, splits, datasets and face preprocessing."""
