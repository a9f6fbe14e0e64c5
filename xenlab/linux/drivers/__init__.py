"""Xen split drivers: blkfront/blkback, netfront/netback, and the console-side frontends."""
