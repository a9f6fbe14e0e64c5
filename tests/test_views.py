"""The lesson widgets, driven from Python the way a learner drives them in JupyterLab.

Each test builds a small trace the way the machine records one, builds the widget, moves
it (slider, buttons, the stage menu, the "go to" box) and asserts on what it shows.
"""

from __future__ import annotations

import subprocess
import sys
from multiprocessing import shared_memory

import pytest

from xenlab.abi.xs_wire import (
    XENSTORE_RING_SIZE,
    XS_READ,
    XS_WRITE,
    xenstore_domain_interface,
    xsd_sockmsg,
)
from xenlab.base.trace import Trace
from xenlab.views import BusView, IrqView, RingView, Stepper, StoreView

SRC = "drivers/xen/core/evtchn.c"


def bind_trace(n_irqs: int = 3, dynirqs: int = 3) -> Trace:
    """xs_init then n_irqs evtchn bindings in dom0, each one a step with its changes rows."""
    t = Trace()
    t.begin_stage("xenstored starts")
    t.record("setup_structure", "initial tree: / /tool /tool/xenstored", actor="xenstored",
             source="tools/xenstore/xenstored_core.c",
             changes=[("xenstored/tree", p, None, "") for p in ("/", "/tool", "/tool/xenstored")]
             + [("xenstored/perms", "/", None, "n0")])
    t.begin_stage("bind ports")
    for i in range(n_irqs):
        port, irq = i + 1, 256 + i if i < dynirqs else None
        if irq is None:
            msg = "No available IRQ to bind to: increase NR_IRQS!"
            t.record("find_unbound_irq", msg, actor="dom0", source=SRC, printk=msg)
            continue
        t.record("bind_evtchn_to_irq", f"port {port} -> IRQ {irq}", actor="dom0", source=SRC,
                 changes=[("dom0/evtchn_to_irq", port, None, irq),
                          ("dom0/irq_info", irq, None, f"evtchn {port}"),
                          ("dom0/irq_bindcount", irq, None, 1),
                          ("xen/d0/evtchn", port, None, ("interdomain", 1, port))])
    return t


IRQ_RANGES = {"PIRQ": (0, 256), "DYNIRQ": (256, 3)}


def test_slider_moves_the_step_and_the_state_with_it():
    s = Stepper(bind_trace(), [IrqView("dom0", ranges=IRQ_RANGES)])
    s["slider"].value = 2
    assert "bind_evtchn_to_irq" in s.text() and "port 2 -> IRQ 257" in s.text()
    assert "DYNIRQ 256..258: 2 of 3 in use" in s.text()
    assert "port 2 -&gt; IRQ 257" in s["body"].value  # what the browser shows
    s["slider"].value = 0  # backwards: IRQs bound later are gone again
    assert "no IRQ bound yet" in s.text() and "setup_structure" in s.text()


def test_buttons_step_and_stop_at_the_ends_with_a_message():
    s = Stepper(bind_trace(), [])
    s["prev"].click()
    assert s.index == 0 and "already at the first step" in s["message"].value
    s["next"].click()
    s["next"].click()
    assert s.index == 2 and s["slider"].value == 2 and s["message"].value == ""
    s.go(s.last)
    s["next"].click()
    assert "already at the last step (3)" in s.message


def test_stage_menu_and_goto_box_jump_to_a_stage_or_a_step():
    t = bind_trace()
    s = Stepper(t, [])
    s["stages"].value = t.stage_start("bind ports")
    assert s.index == 1 and s.stage() == "bind ports"
    s["goto"].value = "xenstored starts"
    assert s.index == 0
    s["goto"].value = "3"
    assert s.index == 3


def test_bad_input_shows_a_message_never_a_traceback():
    s = Stepper(bind_trace(), [])
    s["goto"].value = "99"
    assert "step 99 is not in this stepper: it shows steps 0..3" in s["message"].value
    assert s.index == 0 and s["goto"].value == "99"  # a bad value stays in the box to be corrected
    s["goto"].value = "no such stage"
    assert s.message == "no stage named 'no such stage'; this stepper's stages: xenstored starts, bind ports"
    assert "no such stage" in s["message"].value
    assert s.go("x") is False and "'x' is not a step number" in s.text()
    assert s.go(1.5) is False and s.go(True) is False and s.index == 0
    empty = Stepper(Trace(), [StoreView()])
    assert "the trace is empty" in empty.text() and empty.next() is False


def test_clearing_the_goto_box_clears_its_old_error():
    s = Stepper(bind_trace(), [])
    s["goto"].value = "nowhere"
    assert "no stage named &#x27;nowhere&#x27;" in s["message"].value
    s["goto"].value = ""
    assert s["message"].value == "" and s.message == "" and s.index == 0


def test_the_goto_box_takes_the_same_value_twice():
    """Type 2, Enter; next; type 2, Enter again: back at step 2 (a good value is cleared from the box)."""
    s = Stepper(bind_trace(), [])
    s["goto"].value = "2"
    assert s.index == 2 and s["goto"].value == ""
    s["next"].click()
    assert s.index == 3
    s["goto"].value = "2"
    assert s.index == 2


def test_the_stage_menu_jumps_to_the_start_of_the_current_stage_too():
    t = bind_trace()
    s = Stepper(t, [], start=3)
    assert s.stage() == "bind ports" and s["stages"].value == -1  # the menu never sits on a stage
    s["stages"].value = dict((label.split(" (")[0], pos) for label, pos in s._stages)["bind ports"]
    assert s.index == t.stage_start("bind ports") == 1 and s["stages"].value == -1
    s["stages"].value = 1  # the same stage again: still a jump
    assert s.index == 1


def test_a_stage_menu_with_nothing_to_choose_is_left_out():
    t = bind_trace()
    one = Stepper(t, [], steps=range(1, 4))  # only "bind ports"
    assert [label for label, _ in one._stages] == ["bind ports (step 1)"]
    assert one["stages"] not in one["root"].children[1].children
    none = Stepper(Trace(steps=[], stages=[]), [])
    assert none["stages"] not in none["root"].children[1].children
    both = Stepper(t, [])
    assert both["stages"] in both["root"].children[1].children


def test_the_goto_box_offers_only_this_steppers_stages():
    t = bind_trace()
    s = Stepper(t, [], steps=range(1, 4))
    assert s.stage_names() == ["bind ports"]
    assert s.goto("xenstored starts") is False and s.index == 1
    assert s.message == ("stage 'xenstored starts' is not in this stepper (steps 1..3); "
                         "this stepper has one stage, 'bind ports'")
    assert s.goto("bind ports") and s.index == 1


def test_one_numbering_the_trace_step_numbers_everywhere():
    """Header, label beside the slider, stage menu and go-to box all use the trace's step numbers."""
    t = bind_trace(n_irqs=3)
    t.record("do_IRQ", "IRQ 256 on CPU0", actor="dom0", source="kernel/irq/chip.c")
    s = Stepper(t, [], steps=range(1, 5), only=lambda st: st.function == "bind_evtchn_to_irq")
    assert s.shown == [1, 2, 3]
    s["slider"].value = 1  # the second step shown: step 2
    assert s.index == 2 and s.text().splitlines()[0].startswith("step 2 (this stepper: 3 steps, 1..3)")
    assert s["where"].value.endswith(">step 2</b>") and "step 2 (this stepper" in s["body"].value
    assert [label for label, _ in s._stages] == ["bind ports (step 1)"]
    s["goto"].value = "3"
    assert s.index == 3 and s["slider"].value == 2
    s["goto"].value = "0"  # before this stepper's first step: refused, said, not moved
    assert s.index == 3 and "step 0 is not in this stepper: it shows steps 1..3" in s["message"].value


def test_a_step_the_filter_hides_goes_to_the_next_shown_and_says_so():
    t = bind_trace(n_irqs=3)
    t.record("do_IRQ", "IRQ 256 on CPU0", actor="dom0", source="kernel/irq/chip.c")
    t.record("bind_evtchn_to_irq", "port 9 -> IRQ 300", actor="dom0", source=SRC)
    s = Stepper(t, [], only=lambda st: st.function == "bind_evtchn_to_irq")
    assert s.go(4) and s.index == 5
    assert s.note == "step 4 is not one this stepper stops at: went on to step 5, the next one it shows"
    assert "went on to step 5" in s["message"].value and s.message == ""
    s.prev()  # the note is about the move that made it; the next move clears it
    assert s.index == 3 and s["message"].value == "" and s.note == ""


def test_play_is_one_toggle_with_tooltips_and_pause_stays_on_the_step():
    s = Stepper(bind_trace(), [], start=2)
    play, timer = s["play"], s["timer"]
    assert timer.layout.display == "none" and not timer.show_repeat  # Play's own ■ never shows
    assert play.tooltip.startswith("play:") and s["prev"].tooltip and s["next"].tooltip
    assert "the slider moves through the 4 steps shown here (0..3)" in s["where"].value
    assert s["goto"].tooltip and not s["slider"].readout  # no readout box that reverts bad input silently
    play.value = True
    assert play.description == "⏸ pause" and play.tooltip.startswith("pause: stop playing and stay")
    timer.value = 3  # what the browser's timer does, through the link to the slider
    s["slider"].value = 3
    play.value = False
    assert s.index == 3 and play.description == "▶ play"


def test_exhausted_dynirq_range_is_visible_with_the_printk():
    s = Stepper(bind_trace(n_irqs=4, dynirqs=3), [IrqView("dom0", ranges=IRQ_RANGES)])
    s.go(3)
    assert "DYNIRQ 256..258: 3 of 3 in use, EXHAUSTED" in s.text()
    s.go(4)
    assert "printk: No available IRQ to bind to: increase NR_IRQS!" in s.text()
    assert "xl-err" in s["body"].value  # the exhausted range is drawn in red


def test_irq_view_says_when_each_irq_was_allocated_and_flags_this_steps_rows():
    t = bind_trace()
    text = IrqView("dom0", ranges=IRQ_RANGES).text_at(t, 2)
    lines = {line[2:5]: line for line in text.splitlines() if line[2:5].startswith("25")}
    assert lines["256"].split()[-1] == "1" and lines["257"].split()[-1] == "2"
    assert lines["257"].startswith("*") and not lines["256"].startswith("*")
    assert "Xen: domain 0 ports:" in text and "dom0 kernel: ports:" in text


def test_modern_numbering_has_no_ranges():
    assert "allocated dynamically" in IrqView("dom0").text_at(bind_trace())


def test_store_view_tree_perms_watches_and_removed_nodes():
    t = bind_trace(n_irqs=0)
    t.record("do_write", "dom0: WRITE /tool/xenstored/x", actor="xenstored", source="xenstored_core.c",
             changes=[("xenstored/tree", "/tool/xenstored/x", None, "1"),
                      ("xenstored/perms", "/tool/xenstored/x", None, "n0,r1"),
                      ("xenstored/watches", "dom0 /tool tok1", None, "watch")])
    t.record("do_rm", "dom0: RM /tool/xenstored/x", actor="xenstored", source="xenstored_core.c",
             changes=[("xenstored/tree", "/tool/xenstored/x", "1", None)])
    view = StoreView("/tool")
    after_write = view.text_at(t, 1)
    assert '*     x        "1"    n0,r1' in after_write
    assert "dom0        /tool  tok1" in after_write
    assert '*     x        (removed)' in view.text_at(t, 2)
    assert '"/"' not in after_write  # only the subtree


def test_store_view_rejects_an_invalid_path_in_the_widget():
    view = StoreView()
    s = Stepper(bind_trace(), [view])
    box = view.controls()[0]
    box.value = "/local/domain/bad path!"
    assert "is not a valid absolute xenstore path" in s["body"].value
    assert view.path == "/"
    box.value = "/tool"
    assert "is not a valid" not in s["body"].value and view.path == "/tool"


def test_bus_view_frontend_and_backend_side_by_side():
    t = Trace()
    t.record("bus_register", "registered bus 'xen'", actor="domU1", source="drivers/base/bus.c",
             changes=[("domU1/bus", "xen", None, "registered"),
                      ("domU1/driver", "xen/vbd", None, "registered")])
    t.record("device_add", "added device 'vbd-51712'", actor="domU1", source="drivers/base/core.c",
             changes=[("domU1/device", "xen/vbd-51712", None, "registered"),
                      ("domU1/device_driver", "xen/vbd-51712", None, "vbd"),
                      ("domU1/xenbus_state", "device/vbd/51712", None, 1)])
    t.record("xenbus_switch_state", "backend/vbd/1/51712: Initialising -> InitWait", actor="dom0",
             source="drivers/xen/xenbus/xenbus_client.c",
             changes=[("dom0/xenbus_state", "backend/vbd/1/51712", None, 2)])
    text = BusView().text_at(t, 2)
    assert text.index("[dom0]") < text.index("[domU1]")
    assert "device vbd-51712 -> driver vbd" in text
    assert "*   backend/vbd/1/51712: 2 (InitWait)" in text
    assert "xl-cols" in BusView().show(t).html()


def _put(page: bytearray, ring: str, start: int, data: bytes) -> None:
    intf = xenstore_domain_interface.from_buffer(page)
    base = getattr(xenstore_domain_interface, ring).offset
    for i, b in enumerate(data):
        page[base + ((start + i) & (XENSTORE_RING_SIZE - 1))] = b
    setattr(intf, f"{ring}_prod", start + len(data))
    setattr(intf, f"{ring}_cons", start)


def test_ring_view_frames_a_message_across_the_wrap():
    page = bytearray(4096)
    msg = bytes(xsd_sockmsg(XS_WRITE, 7, 0, 12)) + b"/a/b\0hello!!"
    _put(page, "req", 0x1000 + 1016, msg)  # free-running index past several wraps
    text = RingView(page).text()
    assert "req_cons=0x13f8 (slot 1016)  req_prod=0x1414 (slot 20)  28 bytes in flight, 996 free" in text
    assert ("@0x13f8 header [1016..1023+0..7] XS_WRITE req_id=7 tx_id=0 len=12"
            ' | payload [8..19] "/a/b\\0hello!!"') in text
    assert "1023 &#8617; 0 (wrap)" in RingView(page)._repr_html_()


def test_ring_view_steps_back_through_snapshots_and_keeps_framing_mid_message():
    page = bytearray(4096)
    t = Trace()
    view = RingView(page)
    req = bytes(xsd_sockmsg(XS_READ, 1, 0, 9)) + b"/tool/xx\0"
    _put(page, "req", 0, req)
    t.record("xb_write", "25 bytes", actor="domU1", source="drivers/xen/xenbus/xenbus_comms.c")
    view.snap(t)
    intf = xenstore_domain_interface.from_buffer(page)
    intf.req_cons = 16  # the daemon took the header only
    t.record("read", "header", actor="xenstored", source="xenstored_domain.c")
    view.snap(t)
    s = Stepper(t, [view])
    assert "header [0..15] XS_READ req_id=1 tx_id=0 len=9 | payload [16..24]" in s.text()
    s.go(1)
    assert "header [0..15] (read) XS_READ req_id=1 tx_id=0 len=9 | payload [16..24]" in s.text()
    assert "9 bytes in flight" in s.text()
    s.go(0)
    assert "25 bytes in flight" in s.text()


def test_ring_view_reports_impossible_indices():
    page = bytearray(4096)
    intf = xenstore_domain_interface.from_buffer(page)
    intf.rsp_prod = 5000
    assert "INVALID: prod - cons = 5000 > 1024" in RingView(page).text()


def test_ring_view_reads_a_shared_page_and_a_read_only_copy():
    shm = shared_memory.SharedMemory(create=True, size=4096)
    try:
        page = shm.buf
        msg = bytes(xsd_sockmsg(XS_READ, 3, 0, 2)) + b"/\0"
        _put(page, "rsp", 0, msg)  # type: ignore[arg-type]
        assert "header [0..15] XS_READ req_id=3" in RingView(shm.buf).text()
        assert "header [0..15] XS_READ req_id=3" in RingView(bytes(shm.buf), layout="2.6.18").text()
        assert "server_features" not in RingView(bytes(shm.buf), layout="2.6.18").text()
    finally:
        shm.close()
        shm.unlink()
    with pytest.raises(ValueError, match="at least"):
        RingView(bytearray(100)).text()


def test_mimebundle_carries_the_stable_text_for_nbval():
    s = Stepper(bind_trace(), [IrqView("dom0")])
    bundle = s._repr_mimebundle_()
    assert bundle["text/plain"] == s.text()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_core_and_views_import_without_ipywidgets_until_a_widget_is_built():
    code = ("import sys, xenlab.views as v; from xenlab.views import Stepper, IrqView;"
            "from xenlab.base.trace import Trace; s = Stepper(Trace(), [IrqView()]); s.text();"
            "assert 'ipywidgets' not in sys.modules and 'matplotlib' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


# The store page of a real dom0 (Linux 6.1, oxenstored, Xen 4.17) after xenstored started,
# as realxen captured it (captures/oxenstored/15-ring-after-xenstored.txt, zlib+base64).
REAL_DOM0_PAGE = (
    "eNrtVE1PwkAQXbDiBwJFY6JeTLybtkQMV4hwMYGLf6DAoo3A4nZbwg/wf9tpR5xCm6AXjdmXTNJs37yZ2Xaewb5wHcWMz4RcWcqVz1yxHqLV6"
    "HScZsNmRkQpIP0mipGYKymmlv8SqLFYzlMZdvPOZsWIVcSM6lYB0Nsj5dd6K1++bYi1bFaKKAbS4zbKUezjwRXJn3BXBZLfLsSSSzGZMAd6KG"
    "FaPatzkDpAqYsMKcmHQijmAOcQhUC0F2ceYeZlRqYf+As+HzMH6h/T9gs4AkPNoTt6BSbonqB+deta4AYqpN5nVuq6Ovd2PE4VZZJWoWANU+H"
    "tmIfeiMeKJpkdj1OCD+3k89eRdw59LYI0yWknX/wUSWcJybItN3S9qTv0pp5aMY2/AoM8wyIOHtf/xw8sIUNhN5cwiUvAf9ntD7r9p5Q95HT3"
    "DceAAk7KMlDTJN5AqlNHQCZdfjyi249HdM+haCOuUN6ezyR7vjF2JX/snXeejFfLvlwzv8quPpCRmmsNJrEG0onGryEsJvGOUdBXoqGhoaGh8e"
    "/xAXi9sj8="
)


def test_ring_view_reads_a_real_dom0_store_page():
    import base64
    import zlib

    page = zlib.decompress(base64.b64decode(REAL_DOM0_PAGE))
    view = RingView(page, history=True, limit=100)
    text = view.text()
    assert "req: req_cons=0x276 (slot 630)  req_prod=0x276 (slot 630)  0 bytes in flight" in text
    assert ('@0x0 header [0..15] (read) XS_WATCH req_id=0 tx_id=0 len=31'
            ' | payload [16..46] "memory/target') in text
    assert text.count("XS_WATCH_EVENT") == 6 and "server_features=0x1" in text
    assert "... 2 earlier messages" in RingView(page, history=True, limit=17).text()


def test_irq_view_clips_long_tables_but_keeps_what_this_step_changed():
    t = bind_trace(n_irqs=40, dynirqs=40)
    text = IrqView("dom0", limit=5).text_at(t, 30)
    assert "  ... and 24 more IRQs" in text and "* 285" in text  # step 30 bound IRQ 285


def test_ring_view_follows_a_trace_and_snapshots_each_step_that_changed_the_page():
    page = bytearray(4096)
    t = Trace()
    t.record("boot", "nothing on the ring yet", actor="domU1", source="-")
    view = RingView(page).follow(t)
    req = bytes(xsd_sockmsg(XS_READ, 1, 0, 2)) + b"/\0"
    _put(page, "req", 0, req)
    t.record("xb_write", "18 bytes", actor="domU1", source="drivers/xen/xenbus/xenbus_comms.c")
    t.record("schedule", "no change to the page", actor="domU1", source="kernel/sched.c")
    view.unfollow()
    xenstore_domain_interface.from_buffer(page).req_cons = 18
    t.record("after unfollow", "not seen", actor="xenstored", source="-")
    assert [i for i, _ in view.snapshots] == [0, 1]
    s = Stepper(t, [view])
    assert "0 bytes in flight" in s.text()
    s.go(2)
    assert "18 bytes in flight" in s.text()  # the snapshot of step 1 still stands
    s.go(3)
    assert "18 bytes in flight" in s.text()  # unfollowed: step 3 was not captured


def test_a_filtered_stepper_walks_only_the_chosen_steps_but_shows_the_whole_state():
    t = bind_trace(n_irqs=3)
    t.record("do_IRQ", "IRQ 256 on CPU0", actor="dom0", source="kernel/irq/chip.c")
    s = Stepper(t, [IrqView("dom0")], only=lambda st: st.function == "bind_evtchn_to_irq")
    assert s.shown == [1, 2, 3] and s.index == 1
    assert "step 1 (this stepper: 3 steps, 1..3)" in s.text()
    s["slider"].value = 2
    assert s.index == 3 and "port 3 -> IRQ 258" in s.text()
    s["next"].click()
    assert "already at the last step (3)" in s.message
    s["goto"].value = "0"  # before the first shown step: refused
    assert s.index == 3 and "step 0 is not in this stepper" in s.message
    s["goto"].value = "4"
    assert "step 4 is not in this stepper: it shows steps 1..3" in s.message
    assert Stepper(t, [], only=lambda st: False).text().startswith("! no step matches the filter")
    assert Stepper(t, [], steps=range(2, 4)).shown == [2, 3]


def test_irq_view_of_a_kernel_takes_its_irq_windows():
    from xenbus_harness import Rig

    old = Rig("2.6.18").dom0
    old.boot_stages(initdomain=True)[0][1]()  # early IRQs: xen_init_IRQ sets up the windows
    assert old.irq_ranges() == {"PIRQ": (0, 256), "DYNIRQ": (256, 256)}
    assert "DYNIRQ 256..511: 2 of 256 in use" in IrqView.of(old).text_at(bind_trace(), 2)
    modern = Rig("modern").dom0
    assert "allocated dynamically" in IrqView.of(modern).text_at(bind_trace(), 2)


def test_a_stepper_shows_the_trace_as_it_was_when_made_and_its_stage_menu_starts_in_range():
    t = bind_trace(n_irqs=3)
    s = Stepper(t, [], steps=range(2, 4))
    t.record("later", "recorded by a later cell", actor="dom0", source="-")
    assert "step 2 (this stepper: 2 steps, 2..3)" in s.text()
    assert s.go(4) is False and "step 4 is not in this stepper: it shows steps 2..3" in s.message
    assert [label for label, _ in s._stages] == ["bind ports (step 2)"]


def test_bus_view_takes_root_devices_keyed_by_name_alone():
    t = Trace()
    t.record("device_add", "added device 'xen' on /sys/devices", actor="dom0", source="drivers/base/core.c",
             changes=[("dom0/device", "xen", None, "registered"),
                      ("dom0/device", "/xen-backend", None, "registered")])
    text = BusView().text_at(t)
    assert "/sys/devices (root devices, no bus)" in text
    assert text.splitlines()[2:] == ["*   device xen", "*   device xen-backend"]


def test_a_panel_that_fails_shows_a_message_in_the_stepper_not_a_traceback():
    class Broken(StoreView):
        def text(self, ctx):
            raise KeyError("dom0/nothing")

        html = text

    s = Stepper(bind_trace(), [Broken()])
    assert "! cannot draw step 0: KeyError: 'dom0/nothing'" in s.text()
    assert "cannot draw step 0" in s.html() and "xl-err" in s.html()


def test_port_states_and_modern_irq_info_read_as_words():
    t = Trace()
    t.record("evtchn_bind_interdomain", "d0 port 6", actor="xen", source="xen/common/event_channel.c",
             changes=[("xen/d0/evtchn", 5, None, ("unbound", 1)),
                      ("xen/d0/evtchn", 6, None, ("interdomain", 0, 15)),
                      ("xen/d0/evtchn", 1, None, ("virq", 0, 0)),
                      ("dom0/evtchn_to_irq", 6, None, 29),
                      ("dom0/irq_info", 29, None, ("IRQT_EVTCHN", 6, 0, 1, 0))])
    text = IrqView("dom0").text_at(t)
    assert "unbound, for d1" in text and "interdomain -> d0 port 15" in text and "virq 0 (vcpu 0)" in text
    assert "29   6     IRQT_EVTCHN port 6 cpu0 idx 0 refcnt 1" in text


def test_the_stylesheet_is_in_the_widget_once_not_in_every_redraw():
    """A <style> in each redraw made the browser restyle the page on every step (943 ms in 02's wrap)."""
    s = Stepper(bind_trace(), [IrqView("dom0")])
    s.next()
    assert "<style>" not in s["body"].value and "xl-box" in s["body"].value
    styles = [c for c in s["root"].children if "<style>" in str(getattr(c, "value", ""))]
    assert len(styles) == 1 and styles[0].layout.display == "none"
    assert s.html().startswith("<style>")  # the stored output (no widgets) still carries its style
