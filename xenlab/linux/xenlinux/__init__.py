"""XenLinux 2.6.18, the seed's kernel: one module per source file of the linux-2.6.18-xen tree.

``kernel.XenLinuxKernel`` is the kernel; every other module mirrors one C file (its docstring
names it), with that file's function names in that file's order.
"""
