"""errno values as Xen (xen/include/public/errno.h) and Linux on x86 number them."""

from __future__ import annotations

EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
ENOEXEC = 8
EBADF = 9
ECHILD = 10
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
EXDEV = 18
ENODEV = 19
ENOTDIR = 20
EISDIR = 21
EINVAL = 22
ENFILE = 23
EMFILE = 24
ENOSPC = 28
EROFS = 30
EMLINK = 31
EDOM = 33
ERANGE = 34
EDEADLK = 35
ENAMETOOLONG = 36
ENOLCK = 37
ENOSYS = 38
ENOTEMPTY = 39
ENODATA = 61
ETIME = 62
EBADMSG = 74
EOVERFLOW = 75
EILSEQ = 84
ENOTSOCK = 88
EOPNOTSUPP = 95
EMSGSIZE = 90
EADDRINUSE = 98
EADDRNOTAVAIL = 99
ENOBUFS = 105
EISCONN = 106
ENOTCONN = 107
ECONNREFUSED = 111
ETIMEDOUT = 110

# Not given names here: Xen's aliases EWOULDBLOCK (= EAGAIN) and EDEADLOCK (= EDEADLK), so that
# errno_name() says the usual name, and ERESTART (85), which Xen never lets a guest see.

ERRNO_NAMES: dict[int, str] = {
    v: k for k, v in sorted(dict(globals()).items()) if k.startswith("E") and isinstance(v, int)
}


def errno_name(err: int) -> str:
    """The symbolic name of an errno value (negative values accepted, as kernels return them)."""
    return ERRNO_NAMES.get(abs(err), f"E{abs(err)}")
