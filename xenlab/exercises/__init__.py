"""Classroom exercises with checkers (see ../shared/DESIGN.md): `xenlab quiz`.

Generators (one module per part of the lab they run): ``ring`` (xb_write chunks, framing),
``ports`` (event channels, 2.6.18 IRQs), ``machine`` (modern numbering, xenbus devices and
states), ``perms`` (xenstore permissions). ``quiz`` renders them from a seed and checks
answers. Exercises sit beside ``sim``: they may import every layer below ``views``.
"""
