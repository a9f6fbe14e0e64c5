"""xen/include/public/version.h and features.h: the XENVER_* commands and the feature bits a guest reads."""

from __future__ import annotations

# HYPERVISOR_xen_version commands (version.h)
XENVER_version = 0  # returns (major << 16) | minor
XENVER_extraversion = 1  # fills a 16-byte xen_extraversion_t, e.g. ".7"
XENVER_get_features = 6  # fills xen_feature_info: submap_idx in, submap out
XEN_EXTRAVERSION_LEN = 16

# feature bits (features.h)
XENFEAT_writable_page_tables = 0
XENFEAT_writable_descriptor_tables = 1
XENFEAT_auto_translated_physmap = 2
XENFEAT_supervisor_mode_kernel = 3
XENFEAT_pae_pgdir_above_4gb = 4
XENFEAT_mmu_pt_update_preserve_ad = 5
XENFEAT_gnttab_map_avail_bits = 7
XENFEAT_hvm_callback_vector = 8
XENFEAT_hvm_safe_pvclock = 9
XENFEAT_hvm_pirqs = 10
