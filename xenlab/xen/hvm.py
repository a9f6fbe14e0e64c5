"""xen/arch/x86/hvm/hvm.c, Xen 4.17: do_hvm_op's HVM parameters and the per-vCPU upcall vector.

Theory of operation
-------------------
An HVM domain keeps an array of 64-bit parameters (``d->arch.hvm.params``, here
``d.hvm_params``: an absent index reads 0, as a zeroed array does). The toolstack
fills them while it builds the domain (``xc_hvm_param_set``: HVMOP_set_param from dom0)
and the guest reads them (``HVMOP_get_param`` on DOMID_SELF). Two checks guard each
access, in this order: the XSM hook (the dummy policy's XSM_TARGET: a domain may touch
its own parameters, the control domain anyone's; anyone else gets -EPERM), then
``hvm_allow_{get,set}_param``'s list of what a guest may read or write for itself (the
rest: -EPERM when the caller is the domain itself; the deprecated indices: -EINVAL for
everyone). A PV domain has no parameters: -EINVAL. Every change is recorded on
``xen/dN/hvm_params`` (index -> value); reads change nothing and are recorded as steps.

Not modelled: the side effects of most set_param cases (ioreq pages, viridian, the
identity page table, S3, altp2m...), which only store the value here;
``HVM_PARAM_CALLBACK_IRQ`` stores the via but event delivery stays the lab's upcall hook
(``d.upcall``, which the guest installs when it sets up its vector).
"""

from __future__ import annotations

import ctypes

from xenlab.abi.errno import EEXIST, EINVAL, ENOENT, ENOSYS, EPERM, ESRCH
from xenlab.abi.event_channel import DOMID_SELF
from xenlab.abi.hvm import (
    HVM_NR_PARAMS,
    HVM_PARAM_ACPI_IOPORTS_LOCATION,
    HVM_PARAM_ALTP2M,
    HVM_PARAM_BUFIOREQ_EVTCHN,
    HVM_PARAM_BUFIOREQ_PFN,
    HVM_PARAM_CALLBACK_IRQ,
    HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_DM_DOMAIN,
    HVM_PARAM_IOREQ_PFN,
    HVM_PARAM_IOREQ_SERVER_PFN,
    HVM_PARAM_MCA_CAP,
    HVM_PARAM_MEMORY_EVENT_CR0,
    HVM_PARAM_MEMORY_EVENT_CR3,
    HVM_PARAM_MEMORY_EVENT_CR4,
    HVM_PARAM_MEMORY_EVENT_INT3,
    HVM_PARAM_MEMORY_EVENT_MSR,
    HVM_PARAM_MEMORY_EVENT_SINGLE_STEP,
    HVM_PARAM_NESTEDHVM,
    HVM_PARAM_NR_IOREQ_SERVER_PAGES,
    HVM_PARAM_PAE_ENABLED,
    HVM_PARAM_STORE_EVTCHN,
    HVM_PARAM_STORE_PFN,
    HVM_PARAM_VIRIDIAN,
    HVM_PARAM_VM86_TSS,
    HVM_PARAM_VM86_TSS_SIZED,
    HVM_PARAM_VM_GENERATION_ID_ADDR,
    HVM_PARAM_X87_FIP_WIDTH,
    XEN_HVM_CPUID_DOMID_PRESENT,
    XEN_HVM_CPUID_IOMMU_MAPPINGS,
    XEN_HVM_CPUID_UPCALL_VECTOR,
    XEN_HVM_CPUID_VCPU_ID_PRESENT,
    HVMOP_get_param,
    HVMOP_set_evtchn_upcall_vector,
    HVMOP_set_param,
    xen_hvm_evtchn_upcall_vector,
    xen_hvm_param,
)
from xenlab.xen.domain import Domain
from xenlab.xen.record import XenPart, domain_table

SRC_HVM = "xen/arch/x86/hvm/hvm.c"

#: hvm_allow_get_param: what a guest may read of its own parameters.
GUEST_READABLE = frozenset({
    HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_VM86_TSS, HVM_PARAM_VM86_TSS_SIZED, HVM_PARAM_ACPI_IOPORTS_LOCATION,
    HVM_PARAM_VM_GENERATION_ID_ADDR, HVM_PARAM_STORE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_ALTP2M, HVM_PARAM_X87_FIP_WIDTH})
#: hvm_allow_set_param: what a guest may write of its own parameters.
GUEST_WRITABLE = frozenset({
    HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_VM86_TSS, HVM_PARAM_VM86_TSS_SIZED, HVM_PARAM_ACPI_IOPORTS_LOCATION,
    HVM_PARAM_VM_GENERATION_ID_ADDR, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_X87_FIP_WIDTH})
#: Deprecated indices: -EINVAL for every caller, read or write.
DEPRECATED = frozenset({
    HVM_PARAM_PAE_ENABLED, HVM_PARAM_DM_DOMAIN, HVM_PARAM_MEMORY_EVENT_CR0, HVM_PARAM_MEMORY_EVENT_CR3,
    HVM_PARAM_MEMORY_EVENT_CR4, HVM_PARAM_MEMORY_EVENT_INT3, HVM_PARAM_NESTEDHVM,
    HVM_PARAM_MEMORY_EVENT_SINGLE_STEP, HVM_PARAM_BUFIOREQ_EVTCHN, HVM_PARAM_MEMORY_EVENT_MSR})
#: hvm_allow_set_param: parameters that may only be changed once (then -EEXIST).
SET_ONCE = frozenset({
    HVM_PARAM_VIRIDIAN, HVM_PARAM_IOREQ_PFN, HVM_PARAM_BUFIOREQ_PFN, HVM_PARAM_IOREQ_SERVER_PFN,
    HVM_PARAM_NR_IOREQ_SERVER_PAGES, HVM_PARAM_ALTP2M, HVM_PARAM_MCA_CAP})


class HvmOps(XenPart):
    """HYPERVISOR_hvm_op: HVMOP_set_param, HVMOP_get_param, HVMOP_set_evtchn_upcall_vector."""

    def _xsm_hvm_param(self, caller: int, d: Domain) -> int:
        """xsm_hvm_param (xsm/dummy.h, XSM_TARGET): self or the control domain, else -EPERM."""
        src = self.domains.get(caller)
        if caller == d.domid or (src is not None and src.privileged):
            return 0
        return -EPERM

    def _param_domain(self, caller: int, domid: int, index: int) -> Domain | int:
        """hvmop_{get,set}_param's checks before the parameter: index, domain, is_hvm_domain."""
        if not 0 <= index < HVM_NR_PARAMS:
            return -EINVAL
        d = self.domains.get(caller if domid == DOMID_SELF else domid)  # rcu_lock_domain_by_any_id
        if d is None:
            return -ESRCH
        if not d.hvm:
            return -EINVAL
        return d

    def hvm_allow_get_param(self, caller: int, d: Domain, index: int) -> int:
        """hvm_allow_get_param (hvm.c): XSM, then what a guest may read of its own parameters."""
        rc = self._xsm_hvm_param(caller, d)
        if rc:
            return rc
        if index in GUEST_READABLE:
            return 0
        if index in DEPRECATED:
            return -EINVAL
        return -EPERM if caller == d.domid else 0

    def hvm_get_param(self, caller: int, domid: int, index: int) -> tuple[int, int]:
        """hvmop_get_param + hvm_get_param (hvm.c): (0, value) or (-errno, 0)."""
        d = self._param_domain(caller, domid, index)
        rc = d if isinstance(d, int) else self.hvm_allow_get_param(caller, d, index)
        who = "DOMID_SELF" if domid == DOMID_SELF else f"d{domid}"
        if rc:
            self._rec("hvmop_get_param", f"d{caller}: get param {index} of {who} -> {_errname(rc)}",
                      source=SRC_HVM)
            return rc, 0
        assert isinstance(d, Domain)
        value = d.hvm_params.get(index, 0)
        self._rec("hvmop_get_param", f"d{caller}: get param {index} of d{d.domid} = {value:#x}",
                  source=SRC_HVM)
        return 0, value

    def hvm_allow_set_param(self, caller: int, d: Domain, index: int, value: int) -> int:
        """hvm_allow_set_param (hvm.c): XSM, what a guest may set itself, the set-once parameters."""
        rc = self._xsm_hvm_param(caller, d)
        if rc:
            return rc
        if index in DEPRECATED:
            return -EINVAL
        if index not in GUEST_WRITABLE and caller == d.domid:
            return -EPERM
        old = d.hvm_params.get(index, 0)
        if index in SET_ONCE and old != 0 and value != old:
            return -EEXIST
        return 0

    def hvm_set_param(self, caller: int, domid: int, index: int, value: int) -> int:
        """hvmop_set_param + hvm_set_param (hvm.c): store the value (the side effects: see the docstring)."""
        d = self._param_domain(caller, domid, index)
        rc = d if isinstance(d, int) else self.hvm_allow_set_param(caller, d, index, value)
        who = "DOMID_SELF" if domid == DOMID_SELF else f"d{domid}"
        if rc:
            self._rec("hvmop_set_param", f"d{caller}: set param {index} of {who} = {value:#x} -> "
                      f"{_errname(rc)}", source=SRC_HVM)
            return rc
        assert isinstance(d, Domain)
        old = d.hvm_params.get(index)
        d.hvm_params[index] = value
        self._rec("hvmop_set_param", f"d{caller}: set param {index} of d{d.domid} = {value:#x}",
                  [(domain_table(d, "hvm_params"), index, old, value)], source=SRC_HVM)
        return 0

    def hvmop_set_evtchn_upcall_vector(self, caller: int, vcpu: int, vector: int) -> int:
        """hvmop_set_evtchn_upcall_vector (hvm.c): the vector event upcalls use on *vcpu*."""
        d = self.domains[caller]
        if not d.hvm:
            rc = -EINVAL
        elif vector < 0x10:
            rc = -EINVAL
        elif not 0 <= vcpu < d.vcpus:
            rc = -ENOENT
        else:
            old = d.evtchn_upcall_vector.get(vcpu)
            d.evtchn_upcall_vector[vcpu] = vector
            self._rec("hvmop_set_evtchn_upcall_vector", f"d{caller}v{vcpu}: upcall vector {vector:02x}",
                      [(domain_table(d, "upcall_vector"), vcpu, old, vector)], source=SRC_HVM)
            return 0
        self._rec("hvmop_set_evtchn_upcall_vector", f"d{caller}: vcpu {vcpu} vector {vector:#x} -> "
                  f"{_errname(rc)}", source=SRC_HVM)
        return rc

    def cpuid_hypervisor_leaf4(self, caller: int, vcpu: int) -> tuple[int, int, int]:
        """cpuid_hypervisor_leaves leaf 4 (xen/arch/x86/traps.c): (eax, ebx = vcpu id, ecx = domid).

        The APIC-virtualisation bits depend on the host's VMX features; the lab's host has none.
        """
        eax = (XEN_HVM_CPUID_IOMMU_MAPPINGS | XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT
               | XEN_HVM_CPUID_UPCALL_VECTOR)
        return eax, vcpu, caller

    @staticmethod
    def hvm_pci_intx_gsi(dev: int, intx: int) -> int:
        """hvm_pci_intx_gsi (xen/arch/x86/include/asm/hvm/irq.h): the GSI PCI device *dev*'s INTx
        line reaches on the emulated IO-APIC (what hvmloader's ACPI _PRT tells the guest)."""
        return (((dev << 2) + (dev >> 3) + intx) & 31) + 16

    def hvm_op(self, caller: int, op: int, arg: ctypes.Structure) -> int:
        """do_hvm_op (hvm.c): HYPERVISOR_hvm_op for the three operations the lab models; -ENOSYS else."""
        if op == HVMOP_get_param and isinstance(arg, xen_hvm_param):
            rc, value = self.hvm_get_param(caller, arg.domid, arg.index)
            if rc == 0:  # copied back only on success
                arg.value = value
            return rc
        if op == HVMOP_set_param and isinstance(arg, xen_hvm_param):
            return self.hvm_set_param(caller, arg.domid, arg.index, arg.value)
        if op == HVMOP_set_evtchn_upcall_vector and isinstance(arg, xen_hvm_evtchn_upcall_vector):
            return self.hvmop_set_evtchn_upcall_vector(caller, arg.vcpu, arg.vector)
        if op in (HVMOP_get_param, HVMOP_set_param, HVMOP_set_evtchn_upcall_vector):
            raise TypeError(f"HVMOP {op} does not take struct {type(arg).__name__}")
        self._rec("do_hvm_op", f"d{caller}: op {op} -> -ENOSYS (not modelled)", source=SRC_HVM)
        return -ENOSYS


def _errname(rc: int) -> str:
    names = {-EINVAL: "-EINVAL", -EPERM: "-EPERM", -ESRCH: "-ESRCH", -ENOENT: "-ENOENT", -EEXIST: "-EEXIST"}
    return names.get(rc, str(rc))
