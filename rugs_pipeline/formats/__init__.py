"""The ground floor: each file and wire format the pipeline reads or writes, its reader and writer together.

Imports nothing of the package but ``config`` and itself; every other floor imports it (see test_layers).
"""
