"""Layer 0: the trace and the deterministic scheduler every other layer records into and runs on.

Standard library only. Imports nothing from xenlab.
"""
