"""The pictures: their text forms from known traces, byte-stable PNGs, the fallback without matplotlib.

Each test records a small trace the way the machine records one (the same tables and
summaries), then asks a picture what it shows at a step, as text, as alt text and as PNG.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xenlab.abi.xenbus import XenbusStateInitialised, XenbusStateInitialising, XenbusStateInitWait
from xenlab.base.trace import Trace
from xenlab.linux.xenbus_transitions import handshake_edges
from xenlab.views import HandshakeDiagram, IrqMap, RingPicture, SequenceDiagram, Stepper, TableView
from xenlab.views.picture import NO_MATPLOTLIB, have_matplotlib
from xenlab.views.stepper import Context

COMMS = "drivers/xen/xenbus/xenbus_comms.c"
EVTCHN = "drivers/xen/core/evtchn.c"
XEN_EVTCHN = "xen/common/event_channel.c"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ring_trace() -> Trace:
    """dom0 writes 40 bytes from index 1000 (across the wrap), xenstored reads them, answers 20 bytes."""
    t = Trace()
    t.record("xb_write", "copied 24 bytes to req[1000..1024)", actor="dom0", source=COMMS,
             changes=[("dom0/ring", "req_prod", None, 1000)])
    t.record("ml_interface_read", "d0: 1000 bytes from req[0]", actor="oxenstored", source="xs_ring_stubs.c",
             changes=[("xenstored/ring/d0", "req_cons", None, 1000)])
    t.record("xb_write", "copied 40 bytes to req[1000..1024) and req[0..16)", actor="dom0", source=COMMS,
             changes=[("dom0/ring", "req_prod", 1000, 1040)])
    t.record("ml_interface_read", "d0: 40 bytes from req[1000]", actor="oxenstored", source="xs_ring_stubs.c",
             changes=[("xenstored/ring/d0", "req_cons", 1000, 1040)])
    t.record("evtchn_send", "d0 port 11 -> d0 port 4", actor="xen", source="xen/common/event_channel.c")
    t.record("ml_interface_write", "d0: 20 bytes to rsp[0], rsp_prod 0x0 -> 0x14", actor="oxenstored",
             source="xs_ring_stubs.c", changes=[("xenstored/ring/d0", "rsp_prod", None, 20)])
    return t


def test_ring_picture_text_shows_the_hands_the_bytes_in_flight_and_the_wrap():
    t = ring_trace()
    pic = RingPicture("dom0")
    text = pic.text_at(t, 2)
    assert "req (guest -> xenstored): cons 0x3e8 -> slot 1000, prod 0x410 -> slot 16, 1 full turns" in text
    assert "40 bytes in flight (slots 1000..1023 then 0..15 (wraps from 1023 to 0))" in text
    assert "this step: req_prod 0x3e8 -> 0x410, 40 bytes over slots 1000..1023 then 0..15" in text
    assert "rsp (xenstored -> guest): cons 0x0 -> slot 0, prod 0x0 -> slot 0, 0 full turns; empty" in text
    after = pic.text_at(t, 5)  # the reply: rsp has 20 bytes in flight, req is drained
    assert "req (guest -> xenstored): cons 0x410" in after and "; empty" in after.splitlines()[1]
    assert "rsp (xenstored -> guest): cons 0x0 -> slot 0, prod 0x14 -> slot 20" in after
    assert "20 bytes in flight (slots 0..19)" in after
    alt = pic.alt(Context.at(t, 2))
    assert "40 bytes in flight between req_cons at slot 1000 and req_prod at slot 16" in alt


def test_ring_picture_reads_what_the_toolstack_left_in_the_page_before_either_side():
    t = Trace()
    t.record("fault ring-not-quiescent", "stale indices", actor="toolstack", source="xenlab/sim/faults.py",
             changes=[("toolstack/store_page", k, 0, v) for k, v in
                      (("req_prod", 24), ("req_cons", 24), ("rsp_prod", 32), ("rsp_cons", 16))])
    t.record("xb_init_comms", "response ring not quiescent: rsp_cons = rsp_prod", actor="domU1", source=COMMS,
             changes=[("domU1/ring", "rsp_cons", 16, 32)])
    pic = RingPicture("domU1", initial="toolstack/store_page")
    assert "rsp (xenstored -> guest): cons 0x10 -> slot 16, prod 0x20 -> slot 32" in pic.text_at(t, 0)
    assert "16 bytes in flight (slots 16..31)" in pic.text_at(t, 0)
    fixed = pic.text_at(t, 1)
    assert "rsp (xenstored -> guest): cons 0x20 -> slot 32, prod 0x20 -> slot 32, 0 full turns; empty" \
        in fixed
    assert "this step: rsp_cons 0x10 -> 0x20, 16 bytes over slots 16..31" in fixed


def test_ring_picture_steps_back_by_replay():
    t = ring_trace()
    pic = RingPicture("dom0")
    assert "prod 0x3e8 -> slot 1000" in pic.text_at(t, 0)
    assert "prod 0x410 -> slot 16" in pic.text_at(t, 3)
    assert "prod 0x3e8 -> slot 1000" in pic.text_at(t, 1)  # back again: same as before


def irq_trace(dynirqs: int = 4) -> Trace:
    """2.6.18's find_unbound_irq then a binding, per port; the last scan finds the window full."""
    t = Trace()
    kinds = [0x02, 0x03, 0x03, 0x05]  # IRQT_VIRQ, IRQT_IPI, IRQT_IPI, IRQT_CALLER_PORT
    for i in range(dynirqs):
        irq, port = 256 + i, i + 1
        t.record("find_unbound_irq", f"scanned dynirq 0..{dynirqs - 1} (IRQ 256..{255 + dynirqs}): "
                 f"{i} in use before IRQ {irq}, which has bindcount 0 -> IRQ {irq}",
                 actor="dom0", source=EVTCHN)
        t.record("bind_evtchn_to_irq", f"port {port} -> IRQ {irq}", actor="dom0", source=EVTCHN,
                 changes=[("dom0/evtchn_to_irq", str(port), -1, irq),
                          ("dom0/irq_info", str(irq), 0, (kinds[i % 4] << 24) | port),
                          ("dom0/irq_bindcount", str(irq), 0, 1)])
    t.record("find_unbound_irq", f"scanned dynirq 0..{dynirqs - 1}: all {dynirqs} in use -> warn (once), "
             "-ENOSPC", actor="dom0", source=EVTCHN)
    return t


def test_irq_map_text_shows_kinds_ports_and_the_scan():
    t = irq_trace()
    pic = IrqMap("dom0", base=256, count=4)
    text = pic.text_at(t, 6)  # the fourth scan
    assert "dom0 IRQs 256..259 (2.6.18 DYNIRQ): 3 of 4 in use, 1 free" in text
    assert "IPI: 257..258; VIRQ: 256" in text
    assert "evtchn_to_irq (port->IRQ): 1->256, 2->257, 3->258" in text
    assert "this step: scanned IRQ 256..259 -> IRQ 259" in text
    full = pic.text_at(t, 8)
    assert "4 of 4 in use, EXHAUSTED" in full and "caller port: 259" in full
    assert "this step: scanned IRQ 256..259 -> none free (-ENOSPC)" in full
    assert "found none free" in pic.alt(Context.at(t, 8))


def test_irq_map_draws_the_modern_numbering_beside_it():
    modern = Trace()
    modern.record("set_evtchn_to_irq", "evtchn_to_irq[1] = 24", actor="dom0", source="events_base.c",
                  changes=[("dom0/evtchn_to_irq", "1", -1, 24),
                           ("dom0/irq_info", "24", None, ("IRQT_VIRQ", 1, 0, -1, 0))])
    text = IrqMap("dom0", base=256, count=4, beside=(modern, "dom0")).text_at(irq_trace(), 1)
    assert "beside it, modern (Linux 6.1) at step 0:" in text
    assert "dom0 IRQs 0..31 (modern: irq_alloc_descs): 1 of 32 in use, 31 free" in text


def test_sequence_diagram_reads_hypercalls_notifications_and_ring_messages():
    t = Trace()
    t.record("bind_caller_port_to_irq", "port 4 -> IRQ 259", actor="dom0", source=EVTCHN,
             changes=[("dom0/evtchn_to_irq", "4", -1, 259)])
    t.record("evtchn_alloc_unbound", "d0: alloc_unbound(...)", actor="xen", source=XEN_EVTCHN)
    t.record("xb_write", "copied 16 bytes to req[0..16)", actor="dom0", source=COMMS)
    t.record("evtchn_send", "d0 port 4 -> d0 port 11", actor="xen", source=XEN_EVTCHN)
    t.record("ml_interface_write", "d0: 23 bytes to rsp[0]", actor="oxenstored", source="xs_ring_stubs.c")
    t.record("xs_talkv", "DIRECTORY device", actor="domU1", source="drivers/xen/xenbus/xenbus_xs.c")
    text = SequenceDiagram().text_at(t, 3)
    rows = text.splitlines()
    assert rows[0] == "lanes: dom0 kernel | Xen | xenstored | toolstack | guest kernel"
    assert "#1      dom0 kernel -> Xen" in rows[2] and "hypercall evtchn_alloc_unbound" in rows[2]
    assert "dom0 kernel -> xenstored" in rows[3] and "ring      xb_write: req 16 B" in rows[3]
    assert rows[4].startswith("> #3 ") and "dom0 kernel -> xenstored" in rows[4] and "notify" in rows[4]
    assert "xenstored -> dom0 kernel" in rows[5] and "rsp 23 B" in rows[5]
    assert "guest kernel" in rows[6] and "local     xs_talkv" in rows[6]
    assert "The current step #3 is highlighted" in SequenceDiagram().alt(Context.at(t, 3))


def test_handshake_diagram_is_drawn_from_the_transition_table_with_the_devices_on_it():
    t = Trace()
    t.record("xenbus_switch_state", "backend/vbd/1/51712: Initialising -> InitWait", actor="dom0",
             source="drivers/xen/xenbus/xenbus_client.c",
             changes=[("dom0/xenbus_state", "backend/vbd/1/51712", XenbusStateInitialising,
                       XenbusStateInitWait),
                      ("domU1/xenbus_state", "device/vbd/51712", None, XenbusStateInitialising)])
    t.record("xenbus_switch_state", "device/vbd/51712: Initialising -> Initialised", actor="domU1",
             source="drivers/xen/xenbus/xenbus_client.c",
             changes=[("domU1/xenbus_state", "device/vbd/51712", XenbusStateInitialising,
                       XenbusStateInitialised)])
    pic = HandshakeDiagram("2.6.18")
    text = pic.text_at(t, 1)
    edges = handshake_edges("2.6.18", "frontend")
    assert ("blkfront", "Initialising", "Initialised", "talk_to_backend") in edges
    assert "  Initialising -> Initialised [blkfront]" in text
    assert "  devices: vbd/1/51712 InitWait" in text and "  devices: vbd/51712 Initialised" in text
    assert "  this step: device/vbd/51712 Initialising -> Initialised" in text
    assert "NOT IN THE TABLE" not in text
    assert "This step switched device/vbd/51712 Initialising to Initialised." in pic.alt(Context.at(t, 1))


needs_mpl = pytest.mark.skipif(not have_matplotlib(), reason="matplotlib is not installed")


@needs_mpl
@pytest.mark.parametrize("make", [lambda: (RingPicture("dom0"), ring_trace(), 2),
                                  lambda: (IrqMap("dom0", base=256, count=4), irq_trace(), 6),
                                  lambda: (SequenceDiagram(), ring_trace(), 4),
                                  lambda: (HandshakeDiagram("2.6.18"), ring_trace(), 1)],
                         ids=["ring", "irq", "sequence", "handshake"])
def test_the_same_step_gives_the_same_png_bytes(make):
    pic, t, i = make()
    png = pic.png(Context.at(t, i))
    again, _, _ = make()
    assert png is not None and png.startswith(PNG_SIGNATURE)
    assert again.png(Context.at(t, i)) == png  # a fresh picture, a fresh figure: the same bytes
    assert b"Software" not in png and b"tEXt" not in png  # no version or date chunks
    assert again.png(Context.at(t, i - 1)) != png


@needs_mpl
def test_a_picture_in_a_stepper_updates_its_image_in_place():
    t = ring_trace()
    s = Stepper(t, [RingPicture("dom0")])
    image = s.widget.children[-1]
    state = image.get_state()
    assert state["_view_name"] == "ImageView" and image.format == "png"
    assert state["description"] == ""  # ipywidgets 8 renders an Image's tooltip only with one: picture.py
    first = bytes(image.value)
    s["slider"].value = 2
    assert s.widget.children[-1] is image and bytes(image.value) != first
    assert "40 bytes in flight between req_cons at slot 1000" in s["body"].value  # the alt text, as a caption
    assert "40 bytes in flight" in image.tooltip
    s.prev()
    assert s.index == 1 and bytes(image.value) != first


@needs_mpl
def test_a_picture_at_a_step_displays_as_png_with_its_text():
    shown = RingPicture("dom0").at(ring_trace(), 2)
    data = shown._repr_mimebundle_()
    assert set(data) == {"text/plain", "text/html"} and "40 bytes in flight" in data["text/plain"]
    assert "<img alt='Two circles of 1024 slots" in data["text/html"]
    assert "req_prod at slot 16" in data["text/html"] and "data:image/png;base64," in data["text/html"]


def test_without_matplotlib_a_picture_is_its_text_and_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert not have_matplotlib()
    t = ring_trace()
    pic = RingPicture("dom0")
    ctx = Context.at(t, 2)
    assert pic.png(ctx) is None
    text = pic.text(ctx)
    assert text.endswith(NO_MATPLOTLIB) and "40 bytes in flight" in text
    assert "matplotlib is not installed" in pic.html(ctx) and "40 bytes in flight" in pic.html(ctx)
    data = pic.at(t, 2)._repr_mimebundle_()
    assert "<img" not in data["text/html"] and "matplotlib is not installed" in data["text/html"]
    stepper = Stepper(t, [pic, SequenceDiagram(), HandshakeDiagram(), IrqMap()], start=2)
    assert stepper.text().count(NO_MATPLOTLIB) == 4 and "cannot draw" not in stepper.text()


def test_importing_the_views_imports_no_matplotlib():
    code = "import sys, xenlab.views; print(any(m.startswith('matplotlib') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_table_view_shows_proc_xen_modes_and_marks_what_the_step_changed():
    t = Trace()
    src = "drivers/xen/core/xen_proc.c"
    t.record("create_xen_proc_entry", "/proc/xen/xsd_kva mode 0600", actor="dom0", source=src,
             changes=[("dom0/proc", "xen/xsd_kva", None, "0600")])
    t.record("create_xen_proc_entry", "/proc/xen/xsd_port mode 0400", actor="dom0", source=src,
             changes=[("dom0/proc", "xen/xsd_port", None, "0400")])
    view = TableView({"/proc/xen entries (mode)": "dom0/proc", "xenbus globals": "dom0/xenbus"})
    text = view.text_at(t, 1)
    assert "/proc/xen entries (mode) (dom0/proc):" in text and "xenbus globals (dom0/xenbus): (empty)" in text
    lines = text.splitlines()
    assert any(line.startswith("  xen/xsd_kva ") and "0600" in line for line in lines)
    assert any(line.startswith("* xen/xsd_port") and "0400" in line and "was None" in line for line in lines)
    assert "xen/xsd_port" not in view.text_at(t, 0)  # one step back: not created yet


LESSONS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PICTURE_MAKERS = re.compile(r"\b(?:RingPicture|SequenceDiagram|HandshakeDiagram|IrqMap(?:\.of)?)\(")
#: the heading of each picture's text form in a Stepper's text (its panel title)
PICTURE_TITLE = re.compile("^== (" + "|".join([
    r"the store ring of \S+, drawn as a ring", r"the IRQ map of \S+", r"the bring-up as a sequence diagram",
    r"the XenbusState handshake \(\S+\), drawn from the transition table"]) + ") ==$", re.M)


@pytest.mark.parametrize("lesson", LESSONS, ids=[n.stem for n in LESSONS])
def test_every_picture_in_a_lesson_has_its_text_form_in_the_stored_output(lesson: Path) -> None:
    """What nbval compares (text/plain, and text/html with the PNG masked) carries each picture's text."""
    sanitize = (lesson.parent / "sanitize.cfg").read_text()
    png = re.compile(sanitize.split("[inline_png]", 1)[1].split("regex: ", 1)[1].splitlines()[0])
    for cell in json.loads(lesson.read_text())["cells"]:
        source = "".join(cell["source"])
        made = len(PICTURE_MAKERS.findall(source)) if cell["cell_type"] == "code" else 0
        if not made:
            continue
        data = [o["data"] for o in cell["outputs"] if "data" in o]
        plain = "".join("".join(d.get("text/plain", "")) for d in data)
        alone = source.count(").at(")  # Picture(...).at(trace, step) shows its text form as the cell's text
        assert len(PICTURE_TITLE.findall(plain)) >= made - alone, source[:80]
        if alone:
            assert plain.count("\n") >= 2 and " object at 0x" not in plain
        assert "base64" not in plain and "<img" not in plain
        for d in data:
            html = "".join(d.get("text/html", ""))
            for img in re.findall(r"<img[^>]*>", html):
                assert re.search(r"alt='[^']+'", img) and png.search(img), img[:80]
