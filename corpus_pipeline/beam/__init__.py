"""Thin Beam PTransforms over the pure stages and format writers."""
