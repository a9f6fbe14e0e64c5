"""A domain's shared_info page as the 2-level event-channel ABI uses it.

``SharedInfo`` lays the ctypes ``shared_info`` struct (xenlab.abi.shared_info) over
a real 4096-byte page, so every bit Xen or a guest sets lands at the byte offset the
public header gives: ``vcpu_info[v]`` at ``64*v``, ``evtchn_pending`` at 2048,
``evtchn_mask`` at 2560 (x86_64) or 2176 (x86_32). ``evtchn_pending`` and
``evtchn_mask`` are ``BitArray`` views indexed by port (``sh.evtchn_pending[5] = 1``)
with ``word(i)`` for the xen_ulong_t a guest scans.
"""

from __future__ import annotations

from typing import Any

from xenlab.abi.shared_info import shared_info_layout


class BitArray:
    """A bitmap of xen_ulong_t words inside a page: bit n = port n (little-endian, as on x86)."""

    def __init__(self, buf: Any, offset: int, nbits: int, word_bits: int) -> None:
        self._view = memoryview(buf).cast("B")[offset: offset + nbits // 8]
        self.offset = offset
        self.nbits = nbits
        self.word_bits = word_bits

    def __len__(self) -> int:
        return self.nbits

    def _check(self, n: int) -> None:
        if not 0 <= n < self.nbits:
            raise IndexError(f"bit {n} out of range 0..{self.nbits - 1}")

    def __getitem__(self, n: int) -> int:
        self._check(n)
        return self._view[n >> 3] >> (n & 7) & 1

    def __setitem__(self, n: int, value: int) -> None:
        self._check(n)
        if value:
            self._view[n >> 3] |= 1 << (n & 7)
        else:
            self._view[n >> 3] &= ~(1 << (n & 7)) & 0xFF

    def test_and_set(self, n: int) -> int:
        """test_and_set_bit: set bit n, return its old value."""
        old = self[n]
        self[n] = 1
        return old

    def test_and_clear(self, n: int) -> int:
        """test_and_clear_bit: clear bit n, return its old value."""
        old = self[n]
        self[n] = 0
        return old

    def word(self, idx: int) -> int:
        """The idx-th xen_ulong_t of the bitmap as an unsigned integer."""
        size = self.word_bits // 8
        return int.from_bytes(self._view[idx * size: (idx + 1) * size], "little")

    def set_ports(self) -> list[int]:
        """Every bit that is set, lowest first."""
        return [n for n in range(self.nbits) if self._view[n >> 3] and self[n]]


class SharedInfo:
    """struct shared_info over a page: vcpu_info[], evtchn_pending, evtchn_mask (2-level ABI)."""

    def __init__(self, buf: Any, bits: int = 64) -> None:
        layout = shared_info_layout(bits)
        self.bits = bits
        self.struct = layout.from_buffer(buf)
        self.vcpu_info = self.struct.vcpu_info
        self.evtchn_pending = BitArray(buf, layout.evtchn_pending.offset, bits * bits, bits)
        self.evtchn_mask = BitArray(buf, layout.evtchn_mask.offset, bits * bits, bits)

    # The bit operations guests and tools use (sync_*_bit in Linux).
    def test_pending(self, port: int) -> bool:
        """sync_test_bit(port, evtchn_pending)."""
        return bool(self.evtchn_pending[port])

    def set_pending(self, port: int) -> None:
        """sync_set_bit(port, evtchn_pending) (no selector, no upcall: a guest's own write)."""
        self.evtchn_pending[port] = 1

    def clear_pending(self, port: int) -> None:
        """sync_clear_bit(port, evtchn_pending)."""
        self.evtchn_pending[port] = 0

    def test_mask(self, port: int) -> bool:
        """sync_test_bit(port, evtchn_mask)."""
        return bool(self.evtchn_mask[port])

    def set_mask(self, port: int) -> None:
        """sync_set_bit(port, evtchn_mask): the guest masks a port itself."""
        self.evtchn_mask[port] = 1

    def clear_mask(self, port: int) -> None:
        """sync_clear_bit(port, evtchn_mask) (without the re-raise unmask does)."""
        self.evtchn_mask[port] = 0
