"""Linux 6.1 (Debian's linux-source-6.1) as a Xen guest: one module per source file.

``kernel.PvopsKernel`` is the kernel; every other module mirrors one C file (its docstring
names it), with that file's function names in that file's order.
"""
