"""The bottom layer: what every package (``pipeline``, ``pricing``, ``reports``) may import.

Nothing here imports those packages, so they can share it without importing each other in a
circle (issue 18). For now it holds the one error type for expected failures (``core.errors``).
"""
