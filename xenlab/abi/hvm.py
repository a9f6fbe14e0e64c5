"""HVM parameters and HVMOP_{set,get}_param (xen/include/public/hvm/params.h, hvm/hvm_op.h).

An HVM guest has no start_info: the toolstack leaves what a PV guest finds there (the
store and console pages and ports) in the domain's HVM parameters, and the guest reads
them with HYPERVISOR_hvm_op(HVMOP_get_param). Also the special region the domain
builder puts those pages in (tools/include/xenguest.h).
"""

from __future__ import annotations

import ctypes

HVMOP_set_param = 0
HVMOP_get_param = 1

HVM_PARAM_CALLBACK_IRQ = 0
HVM_PARAM_STORE_PFN = 1
HVM_PARAM_STORE_EVTCHN = 2
HVM_PARAM_PAE_ENABLED = 4  # deprecated
HVM_PARAM_IOREQ_PFN = 5
HVM_PARAM_BUFIOREQ_PFN = 6
HVM_PARAM_VIRIDIAN = 9
HVM_PARAM_TIMER_MODE = 10
HVM_PARAM_HPET_ENABLED = 11
HVM_PARAM_IDENT_PT = 12
HVM_PARAM_DM_DOMAIN = 13  # deprecated
HVM_PARAM_ACPI_S_STATE = 14
HVM_PARAM_VM86_TSS = 15
HVM_PARAM_VPT_ALIGN = 16
HVM_PARAM_CONSOLE_PFN = 17
HVM_PARAM_CONSOLE_EVTCHN = 18
HVM_PARAM_ACPI_IOPORTS_LOCATION = 19
HVM_PARAM_MEMORY_EVENT_CR0 = 20  # deprecated
HVM_PARAM_MEMORY_EVENT_CR3 = 21  # deprecated
HVM_PARAM_MEMORY_EVENT_CR4 = 22  # deprecated
HVM_PARAM_MEMORY_EVENT_INT3 = 23  # deprecated
HVM_PARAM_NESTEDHVM = 24  # deprecated
HVM_PARAM_MEMORY_EVENT_SINGLE_STEP = 25  # deprecated
HVM_PARAM_BUFIOREQ_EVTCHN = 26  # deprecated
HVM_PARAM_PAGING_RING_PFN = 27
HVM_PARAM_MONITOR_RING_PFN = 28
HVM_PARAM_SHARING_RING_PFN = 29
HVM_PARAM_MEMORY_EVENT_MSR = 30  # deprecated
HVM_PARAM_TRIPLE_FAULT_REASON = 31
HVM_PARAM_IOREQ_SERVER_PFN = 32
HVM_PARAM_NR_IOREQ_SERVER_PAGES = 33
HVM_PARAM_VM_GENERATION_ID_ADDR = 34
HVM_PARAM_ALTP2M = 35
HVM_PARAM_X87_FIP_WIDTH = 36
HVM_PARAM_VM86_TSS_SIZED = 37
HVM_PARAM_MCA_CAP = 38
HVM_NR_PARAMS = 39

#: HVM_PARAM_CALLBACK_IRQ's top byte says how events reach the guest; type 2 is a vector
#: delivered straight to the vCPU (what Linux 6.1 asks for), type 0 a GSI, 1 a PCI INTx.
HVM_PARAM_CALLBACK_TYPE_GSI = 0
HVM_PARAM_CALLBACK_TYPE_PCI_INTX = 1
HVM_PARAM_CALLBACK_TYPE_VECTOR = 2

#: tools/include/xenguest.h: the domain builder's special pages end below this pfn.
X86_HVM_NR_SPECIAL_PAGES = 8
X86_HVM_END_SPECIAL_REGION = 0xFF000

#: The names Linux 6.1's param_name (include/xen/hvm.h) prints, by index.
HVM_PARAM_NAMES = {
    HVM_PARAM_CALLBACK_IRQ: "CALLBACK_IRQ", HVM_PARAM_STORE_PFN: "STORE_PFN",
    HVM_PARAM_STORE_EVTCHN: "STORE_EVTCHN", HVM_PARAM_PAE_ENABLED: "PAE_ENABLED",
    HVM_PARAM_IOREQ_PFN: "IOREQ_PFN", HVM_PARAM_BUFIOREQ_PFN: "BUFIOREQ_PFN",
    HVM_PARAM_TIMER_MODE: "TIMER_MODE", HVM_PARAM_HPET_ENABLED: "HPET_ENABLED",
    HVM_PARAM_IDENT_PT: "IDENT_PT", HVM_PARAM_DM_DOMAIN: "DM_DOMAIN",
    HVM_PARAM_ACPI_S_STATE: "ACPI_S_STATE", HVM_PARAM_VM86_TSS: "VM86_TSS",
    HVM_PARAM_VPT_ALIGN: "VPT_ALIGN", HVM_PARAM_CONSOLE_PFN: "CONSOLE_PFN",
    HVM_PARAM_CONSOLE_EVTCHN: "CONSOLE_EVTCHN",
}


class xen_hvm_param(ctypes.Structure):
    """struct xen_hvm_param: HVMOP_set_param / HVMOP_get_param's argument (value is IN/OUT)."""

    _fields_ = [
        ("domid", ctypes.c_uint16),
        ("pad", ctypes.c_uint16),
        ("index", ctypes.c_uint32),
        ("value", ctypes.c_uint64),
    ]


HVMOP_set_evtchn_upcall_vector = 23


class xen_hvm_evtchn_upcall_vector(ctypes.Structure):
    """struct xen_hvm_evtchn_upcall_vector: the vector event upcalls use on one vCPU."""

    _fields_ = [("vcpu", ctypes.c_uint32), ("vector", ctypes.c_uint8)]

#: hvm/e820.h: RAM below 4G ends where the MMIO hole begins.
HVM_BELOW_4G_RAM_END = 0xF0000000
HVM_BELOW_4G_MMIO_START = HVM_BELOW_4G_RAM_END
HVM_BELOW_4G_MMIO_LENGTH = (1 << 32) - HVM_BELOW_4G_MMIO_START

#: arch-x86/cpuid.h: leaf base+4 (HVM-specific parameters), EAX bits.
XEN_HVM_CPUID_IOMMU_MAPPINGS = 1 << 2
XEN_HVM_CPUID_VCPU_ID_PRESENT = 1 << 3
XEN_HVM_CPUID_DOMID_PRESENT = 1 << 4
XEN_HVM_CPUID_UPCALL_VECTOR = 1 << 6
