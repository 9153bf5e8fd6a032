"""Infrastructure shared by every process: the queue table, routing, probes.

Nothing here imports from ``apps/`` (DESIGN.md §8).
"""
