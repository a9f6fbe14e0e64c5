"""XSA-322: a permission entry must not be inherited by a domain created after it was written.

C xenstored 4.17 asks the hypervisor (get_domain_info) at SET_PERMS: an entry naming a
domain that does not exist is marked XS_PERM_IGNORE, and every read ignores an entry
naming a domain newer than the node (domain_adjust_node_perms, the generation counts).
oxenstored 4.17 keeps entries as written and removes those naming a domain when that
domain is RELEASEd (Store.reset_permissions).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_realhost import Client, Lab, Ring
from xs_client import Client as XsClient
from xs_client import introduce

from xenlab.abi import xs_wire as xsw
from xenlab.sim.scenarios import build
from xenlab.sim.xsclient import Perm, XsError
from xenlab.xenstored import payload as pl
from xenlab.xenstored.daemon import Daemon
from xenlab.xenstored.wire import Message


@pytest.mark.parametrize(("xenstored", "guest_reads"), [("cxenstored", "EACCES"), ("oxenstored", "secret")])
def test_the_machine_asks_xen_whether_a_permitted_domain_exists(xenstored: str, guest_reads: str) -> None:
    # dom0 grants read to domid 1 before any domain 1 exists; then `xl create` makes domain 1.
    # (failed before with C xenstored: the daemon was never told, so domain 1 read the node)
    m = build("dom0", xenstored=xenstored)
    try:
        dom0 = m.xs_client(0)
        dom0.write("/p", "secret")
        dom0.set_perms("/p", (Perm.parse("n0"), Perm.parse("r1")))
        guest = m.create_domU()
        assert guest.domid == 1
        try:
            got = m.xs_client(1).read("/p")
        except XsError as e:
            got = e.name
        assert got == guest_reads
        assert [str(p) for p in dom0.get_perms("/p")] == ["n0", "r1"]  # still listed
    finally:
        m.shutdown()


def test_serve_real_asks_xen_whether_a_permitted_domain_exists(tmp_path: Path) -> None:
    # the same through `xenlab serve --real`'s wiring (getdomaininfo through privcmd)
    lab = Lab(tmp_path)
    try:
        hv, drv = lab.hv, lab.drv
        xl = Client(lab.path, lab)
        assert xl.talk(xsw.XS_WRITE, b"/p\0secret").payload == b"OK\0"
        assert xl.talk(xsw.XS_SET_PERMS, b"/p\0n0\0r1\0").payload == b"OK\0"
        assert ("getdomaininfo", 1) in drv.calls
        hv.domain_create(1, "guest")
        page = hv.memory.alloc_page(1)
        drv.grants[(1, 1)] = page
        guest_port = hv.evtchn_alloc_unbound(1, 1, 0)
        assert xl.talk(xsw.XS_INTRODUCE, pl.introduce_payload(1, page.mfn, guest_port)).payload == b"OK\0"
        g = Ring(page.buf)
        g.send(xsw.XS_READ, b"/p\0")
        hv.evtchn_send(1, guest_port)
        lab.turn()
        assert g.take() == [Message(xsw.XS_ERROR, 1, 0, b"EACCES\0")]
        # an entry written while domain 1 exists is honoured
        assert xl.talk(xsw.XS_SET_PERMS, b"/p\0n0\0r1\0").payload == b"OK\0"
        g.send(xsw.XS_READ, b"/p\0")
        hv.evtchn_send(1, guest_port)
        lab.turn()
        assert g.take() == [Message(xsw.XS_READ, 2, 0, b"secret")]
    finally:
        lab.close()


def test_a_domain_known_only_from_permissions_is_forgotten_when_it_goes() -> None:
    # check_domains(): domain 5 existed when /p named it, then died without being introduced;
    # a new domain 5 must not inherit the entry
    exists = {0, 5}
    dom0 = XsClient(Daemon())
    dom0.daemon.domain_exists = lambda d: d in exists
    dom0.write("/p", "secret")
    dom0.set_perms("/p", "n0", "r5")
    assert 5 in dom0.daemon.domains
    exists.discard(5)
    assert dom0.daemon.check_domains() == [5]
    exists.add(5)
    assert introduce(dom0, 5).error(xsw.XS_READ, "/p") == "EACCES"


def test_oxenstored_release_removes_the_domains_entries() -> None:
    dom0 = XsClient(Daemon(name="oxenstored"))
    dom0.daemon.domain_exists = lambda d: d in (0, 1, 2)
    introduce(dom0, 1)
    dom0.write("/p", "secret")
    dom0.set_perms("/p", "n0", "r1", "r2", "r7")  # oxenstored keeps 7 although it does not exist
    assert dom0.call(xsw.XS_RELEASE, "1") == b"OK\0"
    assert dom0.get_perms("/p") == ["n0", "r2", "r7"]
    assert introduce(dom0, 1).error(xsw.XS_READ, "/p") == "EACCES"
    assert introduce(dom0, 7).read("/p") == b"secret"
