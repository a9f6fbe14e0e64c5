"""net/bridge/br_if.c, Linux 6.1: a net device joining a bridge (what dom0's log says of a vif).

The lab has no network stack; it keeps only each bridge's ports (``kernel.bridges``:
bridge -> {device: port number}) and prints what the bridge code prints when vif-bridge
adds a vif (``br_add_if``: the new port starts blocking, is disabled while the vif has no
carrier, and the device goes promiscuous) and when the vif's carrier comes on
(``br_port_carrier_check`` -> br_stp_enable_port: blocking, then, with STP off as on
xenbr0, forwarding at once). The port states themselves live in br_stp.c (br_set_state,
which logs each change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenlab.linux.kernel import KERN_INFO

if TYPE_CHECKING:
    from xenlab.linux.pvops.kernel import PvopsKernel

SRC = "net/bridge/br_if.c"


def _state(kernel: PvopsKernel, br: str, port_no: int, dev: str, state: str) -> None:
    """br_set_state (br_stp.c): the port's new state, logged as the bridge's message."""
    text = f"{br}: port {port_no}({dev}) entered {state} state"
    kernel.printk(KERN_INFO, text)
    kernel.record("br_set_state", f"{br} port {port_no} ({dev}): {state}", "net/bridge/br_stp.c", printk=text)


def find_portno(kernel: PvopsKernel, br: str) -> int:
    """find_portno: the lowest free port number of the bridge, from 1."""
    used = set(kernel.bridges.get(br, {}).values())
    return next(n for n in range(1, len(used) + 2) if n not in used)


def br_add_if(kernel: PvopsKernel, br: str, dev: str) -> int:
    """br_add_if (`brctl addif`): the new port blocking, disabled (no carrier yet); the device promiscuous."""
    port_no = find_portno(kernel, br)
    kernel.bridges.setdefault(br, {})[dev] = port_no
    _state(kernel, br, port_no, dev, "blocking")  # new_nbp -> br_init_port
    _state(kernel, br, port_no, dev, "disabled")  # no carrier yet: br_stp_disable_port
    text = f"device {dev} entered promiscuous mode"  # dev_set_promiscuity (net/core/dev.c)
    kernel.printk(KERN_INFO, text)
    kernel.record("br_add_if", f"{dev} is port {port_no} of {br}", SRC, printk=text)
    return 0


def br_port_carrier_check(kernel: PvopsKernel, dev: str) -> None:
    """br_port_carrier_check (the linkwatch's NETDEV_CHANGE): carrier on -> br_stp_enable_port."""
    for br, ports in sorted(kernel.bridges.items()):
        if dev in ports:
            _state(kernel, br, ports[dev], dev, "blocking")  # br_init_port
            _state(kernel, br, ports[dev], dev, "forwarding")  # br_port_state_selection, STP off


def br_del_if(kernel: PvopsKernel, dev: str) -> None:
    """br_del_if (the vif goes away): forget the port (the lab prints nothing of the teardown)."""
    for ports in kernel.bridges.values():
        ports.pop(dev, None)
