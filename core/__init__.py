"""The bottom layer: what every package (``pipeline``, ``pricing``, ``reports``) may import.

Nothing here imports those packages, so they can share it without importing each other in a
circle (issue 18; ``tests/test_import_layers.py`` walks the imports). It holds the one error
type for expected failures (``core.errors``), exact money (``core.money``), opening the
database with its session settings and migrations (``core.db``) and the named fault points
the crash tests kill runs at (``core.faults``, which ``core.db`` passes).
"""
