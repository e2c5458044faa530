"""Numba fallbacks: one module per kernel family, the same functions as embkern._core."""
