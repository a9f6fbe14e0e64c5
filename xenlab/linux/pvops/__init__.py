"""Linux 6.1 (Debian's linux-source-6.1) as a Xen PV guest or an HVM guest with PV drivers: one module
per source file.

``kernel.PvopsKernel`` is the kernel (its typed state, its boot order, its /init); every
other module mirrors one C file of Linux 6.1 (its docstring names it), with that file's
function names, in that file's order where practical. Nothing here asks which kernel it
is in: the 2.6.18 kernel is the sibling package ``xenlab.linux.xenlinux``.

=========================  ======================================================
module                     C file (Linux 6.1)
=========================  ======================================================
events_internal            drivers/xen/events/events_internal.h (struct evtchn_ops)
events_base                drivers/xen/events/events_base.c
events_2l                  drivers/xen/events/events_2l.c
evtchn                     drivers/xen/evtchn.c (/dev/xen/evtchn)
time                       arch/x86/xen/time.c
smp                        arch/x86/xen/smp.c
smp_pv                     arch/x86/xen/smp_pv.c
spinlock                   arch/x86/xen/spinlock.c
enlighten                  arch/x86/xen/enlighten.c
enlighten_pv               arch/x86/xen/enlighten_pv.c
enlighten_hvm              arch/x86/xen/enlighten_hvm.c
hvm                        include/xen/hvm.h (hvm_get_parameter)
xen_page                   arch/x86/include/asm/xen/page.h (pfn_to_gfn, virt_to_gfn)
xen_asm                    arch/x86/xen/xen-asm.S
pci_xen                    arch/x86/pci/xen.c
mce_core                   arch/x86/kernel/cpu/mce/core.c
x86_irq                    arch/x86/kernel/irq.c (arch_show_interrupts)
irq_proc                   kernel/irq/proc.c (show_interrupts)
proc_generic               fs/proc/generic.c
grant_table                drivers/xen/grant-table.c
pcpu                       drivers/xen/pcpu.c
mcelog                     drivers/xen/mcelog.c
manage                     drivers/xen/manage.c
xen_balloon                drivers/xen/xen-balloon.c
cpu_hotplug                drivers/xen/cpu_hotplug.c
xenfs_super                drivers/xen/xenfs/super.c
xenfs_xenstored            drivers/xen/xenfs/xenstored.c
xenbus_comms               drivers/xen/xenbus/xenbus_comms.c
xenbus_xs                  drivers/xen/xenbus/xenbus_xs.c
xenbus_probe               drivers/xen/xenbus/xenbus_probe.c
xenbus_probe_frontend      drivers/xen/xenbus/xenbus_probe_frontend.c
xenbus_probe_backend       drivers/xen/xenbus/xenbus_probe_backend.c
xenbus_client              drivers/xen/xenbus/xenbus_client.c
xenbus_dev_frontend        drivers/xen/xenbus/xenbus_dev_frontend.c
hvc_xen                    drivers/tty/hvc/hvc_xen.c
xen_kbdfront               drivers/input/misc/xen-kbdfront.c
xen_fbfront                drivers/video/fbdev/xen-fbfront.c
xen_blkfront               drivers/block/xen-blkfront.c
blkback_xenbus             drivers/block/xen-blkback/xenbus.c
blkback_blkback            drivers/block/xen-blkback/blkback.c
xen_netfront               drivers/net/xen-netfront.c
netback_xenbus             drivers/net/xen-netback/xenbus.c
netback_interface          drivers/net/xen-netback/interface.c
br_if                      net/bridge/br_if.c (a vif joining xenbr0: the bridge's messages)
loop                       drivers/block/loop.c (`losetup` in the block hotplug script)
legacy_irqs                (not a mirror) dom0's platform drivers' request_irq calls
=========================  ======================================================

Python conventions for the C idioms (xenbus_xs.py says them in full): a pointer-or-ERR_PTR
return is the value or a negative int (-errno); an int 0/-errno return stays an int; out
parameters come back as a tuple, status first (``xenbus_transaction_start`` -> (err,
xbt), ``xenbus_scanf`` -> (matched or -errno, value), ``xenbus_gather`` -> (err, values),
``xenbus_alloc_evtchn`` -> (err, port), ``gnttab_alloc_grant_references`` -> (err,
chain)); ``xenbus_printf``/``xenbus_scanf`` take C formats. Every function takes the
``PvopsKernel`` first; records go through ``kernel.record`` and ``kernel.table``.
"""
