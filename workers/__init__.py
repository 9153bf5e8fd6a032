"""Infrastructure shared by every process: the queue table, routing, probes.

Nothing here imports from ``apps/``, Django's models or settings: the one-way
dependencies are described in docs/architecture.md and checked by .importlinter.
"""
