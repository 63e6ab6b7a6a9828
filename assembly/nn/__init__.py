"""Torch modules the builder wires together. One module per concept."""
