"""The simulated hypervisor: machine memory, domains, event channels (2-level and FIFO ABIs).

See ../shared/DESIGN.md and DEVELOPERS.md ("Hypervisor") for the contract.
"""

from xenlab.xen.domain import Channel, Domain
from xenlab.xen.domctl import DomainInfo
from xenlab.xen.errors import XenError, xen_check
from xenlab.xen.hypervisor import Hypervisor
from xenlab.xen.keyhandler import dump_evtchn_info
from xenlab.xen.memory import MachineMemory, Page, map_real_page
from xenlab.xen.shared_info import BitArray, SharedInfo

__all__ = ["BitArray", "Channel", "Domain", "DomainInfo", "Hypervisor", "MachineMemory", "Page",
           "SharedInfo", "XenError", "dump_evtchn_info", "map_real_page", "xen_check"]
