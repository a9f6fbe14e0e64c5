"""The Xen public ABI as Python facts: numbers, names and layouts. No behaviour, no state.

Every value here is checked against Debian's libxen-dev headers by
tests/test_abi_conformance.py (a C program prints the real values).
"""
