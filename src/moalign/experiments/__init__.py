"""Synthetic benchmarks, the text demo and reports (docs/design.md, "Layers")."""
