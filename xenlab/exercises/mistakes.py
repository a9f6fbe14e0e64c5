"""A catalogue of typical wrong answers to the implement-the-kernel tasks, and the hint each must get.

Each entry is a plausible student function with one classic mistake in it (an instructor can
run them to see what the checker says); ``tests/test_kernel_tasks.py`` checks that each one
fails and that its message carries the intended hint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xenlab.abi.errno import EIO, ENOSPC
from xenlab.abi.xs_wire import XENSTORE_RING_SIZE
from xenlab.exercises import kernel_tasks as kt
from xenlab.exercises.kernel_cases import ring_put
from xenlab.linux.kernel import KERN_ERR, KERN_WARNING
from xenlab.linux.pvops import events_base
from xenlab.linux.pvops.kernel import PvopsKernel
from xenlab.linux.xenlinux import evtchn as l18
from xenlab.linux.xenlinux import xenbus_comms as c18
from xenlab.linux.xenlinux.kernel import XenLinuxKernel

U32 = 0xFFFFFFFF


def _write_2618(kernel: XenLinuxKernel, data: bytes, *, chunk_end: int = 0, mask_prod: bool = False,
                kick_each: bool = True) -> int:
    intf = kernel.xb.xen_store_interface
    assert intf is not None
    done = 0
    while done < len(data):
        cons, prod = intf.req_cons, intf.req_prod
        if not c18.check_indexes(cons, prod):
            intf.req_cons = intf.req_prod = 0
            return -EIO
        off = prod % XENSTORE_RING_SIZE
        free = XENSTORE_RING_SIZE - ((prod - cons) & U32)
        n = min(XENSTORE_RING_SIZE - off - chunk_end, free, len(data) - done)
        if n <= 0:
            continue
        ring_put(intf, "req", off, data[done:done + n])
        done += n
        intf.req_prod = (prod + n) % XENSTORE_RING_SIZE if mask_prod else (prod + n) & U32
        if kick_each:
            l18.notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    if not kick_each:
        l18.notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return 0


def off_by_one_at_the_wrap(kernel: XenLinuxKernel, data: bytes) -> int:
    """xb_write whose chunk stops one byte short of the ring's end."""
    return _write_2618(kernel, data, chunk_end=1)


def masked_too_early(kernel: XenLinuxKernel, data: bytes) -> int:
    """xb_write that stores the masked offset in req_prod."""
    return _write_2618(kernel, data, mask_prod=True)


def kicks_once(kernel: XenLinuxKernel, data: bytes) -> int:
    """xb_write (2.6.18) that notifies once, after the whole copy."""
    return _write_2618(kernel, data, kick_each=False)


def kicks_every_chunk_on_61(kernel: PvopsKernel, data: bytes) -> int:
    """Linux 6.1's xb_write with 2.6.18's rule: a kick after every chunk."""
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
        events_base.notify_remote_via_evtchn(kernel, kernel.xb.xen_store_evtchn)
    return done


def warns_every_time(kernel: XenLinuxKernel) -> int:
    """find_unbound_irq without the warned flag: it warns on every exhausted scan."""
    st = l18.evtchn_state(kernel)
    first = st.space.DYNIRQ_BASE
    for irq in range(first, first + st.space.NR_DYNIRQS):
        if st.irq_bindcount[irq] == 0:
            return irq
    kernel.printk(KERN_WARNING, "No available IRQ to bind to: increase NR_DYNIRQS.")
    return -ENOSPC


def forgets_bindcount(kernel: XenLinuxKernel, caller_port: int) -> int:
    """bind_caller_port_to_irq that never counts the binding."""
    st = l18.evtchn_state(kernel)
    irq = st.evtchn_to_irq[caller_port]
    if irq == -1:
        irq = l18.find_unbound_irq(kernel)
        if irq < 0:
            return irq
        st.evtchn_to_irq[caller_port] = irq
        st.irq_info[irq] = l18.mk_irq_info(l18.IRQT_CALLER_PORT, 0, caller_port)
    return irq


def resets_req_like_rsp(kernel: XenLinuxKernel) -> int:
    """xb_init_comms that 'fixes up' the request ring too."""
    intf = kernel.xb.xen_store_interface
    assert intf is not None
    if intf.req_prod != intf.req_cons:
        kernel.printk(KERN_ERR, f"XENBUS request ring is not quiescent "
                      f"({intf.req_cons:08x}:{intf.req_prod:08x})!")
        intf.req_cons = intf.req_prod
    if intf.rsp_prod != intf.rsp_cons:
        kernel.printk(KERN_WARNING, f"XENBUS response ring is not quiescent "
                      f"({intf.rsp_cons:08x}:{intf.rsp_prod:08x}): fixing up")
        intf.rsp_cons = intf.rsp_prod

    def handler(irq: int, dev_id: Any) -> int:
        return c18.wake_waiting(kernel, irq, dev_id)

    err = l18.bind_caller_port_to_irqhandler(kernel, kernel.xb.xen_store_evtchn, handler, 0, "xenbus",
                                             kernel.xb.xb_waitq)
    if err <= 0:
        return err
    kernel.xb.xenbus_irq = err
    return 0


def check_indexes_no_u32(cons: int, prod: int) -> bool:
    """check_indexes that forgets the counters wrap at 2^32."""
    return prod - cons <= XENSTORE_RING_SIZE


@dataclass(frozen=True)
class Mistake:
    """A wrong answer, the task it answers, and the hint the checker must give it."""

    name: str
    task: str
    fn: Callable[..., Any]
    hint: str


CATALOGUE: tuple[Mistake, ...] = (
    Mistake("off-by-one at the wrap", "xb_write_2.6.18", off_by_one_at_the_wrap, kt.WRAP),
    Mistake("masking the index too early", "xb_write_2.6.18", masked_too_early, kt.MASKED),
    Mistake("kicking only once in 2.6.18", "xb_write_2.6.18", kicks_once, kt.KICK_2618),
    Mistake("2.6.18's kick rule on 6.1", "xb_write_6.1", kicks_every_chunk_on_61, kt.KICK_61),
    Mistake("warning on every exhausted scan", "find_unbound_irq", warns_every_time, kt.WARN_ONCE),
    Mistake("forgetting irq_bindcount", "bind_caller_port_to_irq", forgets_bindcount, kt.BINDCOUNT),
    Mistake("resetting req like rsp", "xb_init_comms", resets_req_like_rsp, kt.REQ_LIKE_RSP),
    Mistake("prod - cons without uint32", "check_indexes", check_indexes_no_u32, kt.U32_HINT),
)
