"""XenLinux 2.6.18, the seed's kernel: one module per source file of the linux-2.6.18-xen tree.

``kernel.XenLinuxKernel`` is the kernel; every other module mirrors one C file (its docstring
names it), with that file's function names in that file's order:

=========================  ===================================================================
module                     C file (linux-2.6.18-xen)
=========================  ===================================================================
evtchn                     drivers/xen/core/evtchn.c (+ the inlines of include/xen/evtchn.h)
evtchn_dev                 drivers/xen/evtchn/evtchn.c (/dev/xen/evtchn)
gnttab                     drivers/xen/core/gnttab.c
xen_proc                   drivers/xen/core/xen_proc.c (/proc/xen)
hvm                        include/xen/hvm.h (hvm_get_parameter, for the PV-on-HVM build)
page                       include/asm-x86_64/mach-xen/asm/page.h (pfn_to_mfn, virt_to_mfn)
platform_pci               unmodified_drivers/linux-2.6/platform-pci/platform-pci.c (Xen 4.1; PV-on-HVM)
smpboot                    drivers/xen/core/smpboot.c (cpu_present_map, __cpu_up: each vcpu's IPIs)
reboot                     drivers/xen/core/reboot.c (control/shutdown and control/sysrq watches)
cpu_hotplug                drivers/xen/core/cpu_hotplug.c (the "cpu" watch: a domU's vcpus come up)
time_xen                   arch/i386/kernel/time-xen.c (the timer VIRQ; x86_64 builds it too)
irq_xen                    arch/x86_64/kernel/irq-xen.c (/proc/interrupts)
xenbus_comms               drivers/xen/xenbus/xenbus_comms.c
xenbus_xs                  drivers/xen/xenbus/xenbus_xs.c
xenbus_probe               drivers/xen/xenbus/xenbus_probe.c (with the frontend bus, as in 2.6.18)
xenbus_probe_backend       drivers/xen/xenbus/xenbus_probe_backend.c
xenbus_client              drivers/xen/xenbus/xenbus_client.c
xenbus_backend_client      drivers/xen/xenbus/xenbus_backend_client.c
xenbus_dev                 drivers/xen/xenbus/xenbus_dev.c (/proc/xen/xenbus)
balloon                    drivers/xen/balloon/balloon.c (the memory/target watch, /proc/xen/balloon)
privcmd                    drivers/xen/privcmd/privcmd.c (/proc/xen/privcmd and capabilities)
console                    drivers/xen/console/console.c
xencons_ring               drivers/xen/console/xencons_ring.c
blkfront                   drivers/xen/blkfront/blkfront.c
blkback                    drivers/xen/blkback/blkback.c
blkback_interface          drivers/xen/blkback/interface.c
blkback_vbd                drivers/xen/blkback/vbd.c
blkback_xenbus             drivers/xen/blkback/xenbus.c
netfront                   drivers/xen/netfront/netfront.c
netback_interface          drivers/xen/netback/interface.c
netback_xenbus             drivers/xen/netback/xenbus.c
=========================  ===================================================================

mm/page_alloc.c (get_zeroed_page, free_page) is the shared ``xenlab.linux.mm``: both kernels
allocate pages the same way.

Python conventions for the C idioms (every module follows them): the kernel object is the
first argument (``kernel: XenLinuxKernel``); a C function returning a pointer or ERR_PTR
returns the value or an int -errno (``isinstance(ret, int)`` is IS_ERR); one returning
0 / -errno does the same; one that also fills out-parameters returns a tuple of its C
return value and the out values (``xenbus_transaction_start -> (err, t)``,
``xenbus_scanf -> (items matched or -errno, values)``, ``xenbus_gather -> (err, values)``,
``gnttab_alloc_grant_references -> (err, chain)``, ``xenbus_alloc_evtchn -> (err, port)``);
a chain of grant references is a list. A watch callback is ``callback(watch, path, token)``.
The shared layers below (xenlab.linux.irq, driver_model, genhd, locking) are common to
both kernels the lab models.

Which build: ``kernel.XenLinuxConfig`` holds the .config symbols the modelled paths test
(CONFIG_HOTPLUG_CPU, CONFIG_RTC); ``kernel.KCONFIGS`` says which config file each variant
of evtchn.VARIANTS stands for (L18: the tree's xen0/xenU defconfigs; RH5: RHEL5's one
x86_64-xen config), and ``XenLinuxKernel.kconfig()`` picks dom0's or a domU's. A config
fact is tested where the C code has its #ifdef, never by the variant's name.
"""
