"""Reference solutions of the implement-the-kernel tasks, written as a student would write them.

Each is the real function with the lab's mirrored signature, using only what a student is
given (the kernel's state objects and the helpers of the same C file); none records into
the trace (the checker compares what the function DID, not what it said). They are kept
out of the notebooks; ``tests/test_kernel_tasks.py`` runs them for seeds 0-49.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xenlab.abi.errno import EIO, ENOSPC
from xenlab.abi.xs_wire import XENSTORE_RING_SIZE
from xenlab.exercises.handshake import Handshake
from xenlab.exercises.kernel_cases import ring_get, ring_put
from xenlab.linux.kernel import KERN_ERR, KERN_WARNING
from xenlab.linux.pvops import events_base
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux import xenbus_comms as c18
from xenlab.linux.xenlinux.kernel import XenLinuxKernel
from xenlab.sim.toolstack import LOOP_MAJOR

U32 = 0xFFFFFFFF


def find_unbound_irq(kernel: XenLinuxKernel) -> int:
    """The lowest dynamic IRQ whose irq_bindcount is 0; none: warn once, -ENOSPC."""
    st = l18.evtchn_state(kernel)
    first = st.space.DYNIRQ_BASE
    for irq in range(first, first + st.space.NR_DYNIRQS):
        if st.irq_bindcount[irq] == 0:
            return irq
    if not st.warned:
        st.warned = True
        kernel.printk(KERN_WARNING, "No available IRQ to bind to: increase NR_DYNIRQS.")
    return -ENOSPC


def bind_caller_port_to_irq(kernel: XenLinuxKernel, caller_port: int) -> int:
    """A port someone gave us: reuse its IRQ if it has one, else the next free one; count the binding."""
    st = l18.evtchn_state(kernel)
    irq = st.evtchn_to_irq[caller_port]
    if irq == -1:
        irq = l18.find_unbound_irq(kernel)
        if irq < 0:
            return irq
        st.evtchn_to_irq[caller_port] = irq
        st.irq_info[irq] = l18.mk_irq_info(l18.IRQT_CALLER_PORT, 0, caller_port)
    st.irq_bindcount[irq] += 1
    return irq


def check_indexes(cons: int, prod: int) -> bool:
    """Sane if at most a ring's worth is in flight, counting in uint32."""
    return ((prod - cons) & U32) <= XENSTORE_RING_SIZE


def xb_write_2618(kernel: XenLinuxKernel, data: bytes) -> int:
    """XenLinux 2.6.18: chunk by chunk, sleeping while full, a kick after every chunk."""
    intf = kernel.xb.xen_store_interface
    assert intf is not None
    done = 0
    while done < len(data):
        kernel.sched.wait_event(kernel.xb.xb_waitq,
                                lambda: ((intf.req_prod - intf.req_cons) & U32) != XENSTORE_RING_SIZE)
        cons, prod = intf.req_cons, intf.req_prod
        if not c18.check_indexes(cons, prod):
            intf.req_cons = intf.req_prod = 0
            return -EIO
        off = prod % XENSTORE_RING_SIZE
        n = min(XENSTORE_RING_SIZE - off, XENSTORE_RING_SIZE - ((prod - cons) & U32), len(data) - done)
        ring_put(intf, "req", off, data[done:done + n])
        done += n
        intf.req_prod = (prod + n) & U32
        l18.notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return 0


def xb_write_61(kernel: PvopsKernel, data: bytes) -> int:
    """Linux 6.1: never sleeps; kicks only when xenstored had caught up with the old prod."""
    intf = kernel.xb.xen_store_interface
    assert intf is not None
    done = 0
    while done < len(data):
        cons, prod = intf.req_cons, intf.req_prod
        if ((prod - cons) & U32) > XENSTORE_RING_SIZE:
            intf.req_cons = intf.req_prod = 0
            return -EIO
        if ((prod - cons) & U32) == XENSTORE_RING_SIZE:
            return done
        off = prod % XENSTORE_RING_SIZE
        n = min(XENSTORE_RING_SIZE - off, XENSTORE_RING_SIZE - ((prod - cons) & U32), len(data) - done)
        ring_put(intf, "req", off, data[done:done + n])
        done += n
        intf.req_prod = (prod + n) & U32
        if prod <= intf.req_cons:
            events_base.notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return done


def xb_read(kernel: XenLinuxKernel, n: int) -> bytes | int:
    """XenLinux 2.6.18: sleep until bytes come, copy chunk by chunk, a kick after every chunk."""
    intf = kernel.xb.xen_store_interface
    assert intf is not None
    out = b""
    while len(out) < n:
        c18.xb_wait_for_data_to_read(kernel)
        cons, prod = intf.rsp_cons, intf.rsp_prod
        if not c18.check_indexes(cons, prod):
            intf.rsp_cons = intf.rsp_prod = 0
            return -EIO
        off = cons % XENSTORE_RING_SIZE
        k = min(XENSTORE_RING_SIZE - off, (prod - cons) & U32, n - len(out))
        out += ring_get(intf, "rsp", off, k)
        intf.rsp_cons = (cons + k) & U32
        l18.notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return out


def xb_init_comms(kernel: XenLinuxKernel) -> int:
    """Report a busy request ring, skip a stale response ring, bind the store port to "xenbus"."""
    intf = kernel.xb.xen_store_interface
    xb = kernel.xb
    assert intf is not None
    if intf.req_prod != intf.req_cons:
        kernel.printk(KERN_ERR, f"XENBUS request ring is not quiescent "
                      f"({intf.req_cons:08x}:{intf.req_prod:08x})!")
    if intf.rsp_prod != intf.rsp_cons:
        kernel.printk(KERN_WARNING, f"XENBUS response ring is not quiescent "
                      f"({intf.rsp_cons:08x}:{intf.rsp_prod:08x}): fixing up")
        intf.rsp_cons = intf.rsp_prod
    if xb.xenbus_irq:
        l18.unbind_from_irqhandler(kernel, xb.xenbus_irq, xb.xb_waitq)
        xb.xenbus_irq = 0

    def handler(irq: int, dev_id: Any) -> int:
        return c18.wake_waiting(kernel, irq, dev_id)

    handler.__name__ = "wake_waiting"
    err = l18.bind_caller_port_to_irqhandler(kernel, xb.xen_store_evtchn, handler, 0, "xenbus", xb.xb_waitq)
    if err <= 0:
        kernel.printk(KERN_ERR, f"XENBUS request irq failed {err}")
        return err
    xb.xenbus_irq = err
    return 0


def wake_waiting(kernel: XenLinuxKernel, irq: int, dev_id: Any) -> int:
    """The first store interrupt marks xenstored ready and schedules the probe; every one wakes readers."""
    xb = kernel.xb
    if not xb.xenstored_ready:
        xb.xenstored_ready = 1
        if xb.probe_work is not None:
            xb.probe_work()
    kernel.sched.wake_up(xb.xb_waitq)
    return 1  # IRQ_HANDLED


def drive_handshake(hs: Handshake) -> None:
    """The block hotplug script's step: the loop device holding the image, major:minor in hex."""
    hs.write(hs.backend + "/physical-device", f"{LOOP_MAJOR:x}:{hs.loop:x}")


#: kernel task (kernel_tasks.TASKS) -> its reference solution
REFERENCE: dict[str, Callable[..., Any]] = {
    "find_unbound_irq": find_unbound_irq,
    "bind_caller_port_to_irq": bind_caller_port_to_irq,
    "check_indexes": check_indexes,
    "xb_write_2.6.18": xb_write_2618,
    "xb_write_6.1": xb_write_61,
    "xb_read": xb_read,
    "xb_init_comms": xb_init_comms,
    "wake_waiting": wake_waiting,
}
