"""Tests of the mcpcore Python binding against a real runtime (see conftest.py)."""

import collections
import json
import os
import secrets
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time

import numpy
import pytest

import mcpcore
from mcpcore import Control, LearningData, LearningModel, MCPMessage, TrainingData

from conftest import PY_ENV, TEST_CONFIG, cli, shm_path

REGION_NAMES = [
    "shared.rings", "shared.state_cache", "shared.message_queue",
    "core.protocol", "core.state", "core.routing",
    "learning.models", "learning.training", "learning.features",
    "storage.active_models", "storage.history",
]

SEG_MAGIC = 0x3145524F4350434D      # "MCPCORE1", mc_seg.h
HDR_SIZE = 64 * 1024                # MC_SEG_HDR_SIZE


def run_python(code, *args, timeout=30, **kw):
    """Run a Python snippet in a child /usr/bin/python3 with our mcpcore."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout, env=PY_ENV, **kw)


def spawn_python(code, *args):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=PY_ENV)


# -- attach, regions ----------------------------------------------------------


def test_regions_match_layout(seg):
    layout = json.loads(cli("layout", "--json", "--config", TEST_CONFIG).stdout)
    regions = seg.regions
    assert [r.name for r in regions] == REGION_NAMES
    assert [(r.name, r.offset, r.size, r.writer) for r in regions] == \
        [(r["name"], r["offset"], r["size"], r["writer"]) for r in layout["regions"]]
    assert sum(r.size for r in regions) == seg.size == layout["total"]
    # back to back, page aligned
    for prev, cur in zip(regions, regions[1:]):
        assert cur.offset == prev.offset + prev.size
        assert cur.offset % 4096 == 0
    h = seg.header()
    assert h["nslots"] == layout["control"]["slots"]
    assert h["nrings"] == layout["control"]["rings"]
    assert h["ring_entries"] == layout["control"]["ring_entries"]
    assert h["abi"] == mcpcore._mcpcore.ABI


def test_status_matches_cli(runtime, seg):
    cli_status = runtime.status()
    st = seg.status()
    assert st["instance"] == runtime.instance
    assert st["size"] == cli_status["size"]
    assert st["supervisor"]["pid"] == cli_status["supervisor"]["pid"] == runtime.proc.pid
    assert st["supervisor"]["alive"] is True
    assert [(w["name"], w["pid"], w["state"]) for w in st["workers"]] == \
        [(w["name"], w["pid"], w["state"]) for w in cli_status["workers"]]
    assert [w["name"] for w in seg.workers] == list(mcpcore.WORKERS)
    assert all(w["state"] == "running" and w["heartbeat_age_ms"] < 5000 for w in seg.workers)
    assert len(seg.rings) == seg.header()["nrings"]
    assert {r["name"] for r in st["rings"]} == {r["name"] for r in cli_status["rings"]}


def test_region_is_zero_copy(runtime, seg):
    region = next(r for r in seg.regions if r.name == "learning.features")
    arr = numpy.frombuffer(seg.region("learning.features"), dtype=numpy.uint8)
    assert arr.size == region.size and arr.flags.writeable
    # the array's memory is the mapping itself, not a copy
    assert arr.ctypes.data == seg.address + region.offset
    pattern = numpy.frombuffer(secrets.token_bytes(4096), dtype=numpy.uint8)
    arr[8192:8192 + 4096] = pattern

    # a second attach maps it elsewhere and sees the bytes
    with mcpcore.attach(runtime.instance) as other:
        view = other.region("learning.features")
        assert other.address != seg.address
        assert bytes(view[8192:8192 + 4096]) == pattern.tobytes()
        # and writes through it show up in the first array, which was made before
        view[0:4] = b"\x01\x02\x03\x04"
        assert list(arr[0:4]) == [1, 2, 3, 4]
        del view

    # another process reads our write and writes back
    child = run_python("""
        import sys, numpy, mcpcore
        with mcpcore.attach(sys.argv[1]) as s:
            a = numpy.frombuffer(s.region("learning.features"), dtype=numpy.uint8)
            print(bytes(a[8192:8192 + 4096]).hex())
            a[100:108] = 0xAB
            del a
        """, runtime.instance)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == pattern.tobytes().hex()
    assert list(arr[100:108]) == [0xAB] * 8

    arr[:] = 0
    del arr


def test_close_refuses_while_views_alive(runtime):
    s = mcpcore.attach(runtime.instance)
    view = s.region("core.state")
    arr = numpy.frombuffer(s.region("core.routing"), dtype=numpy.uint64)
    with pytest.raises(BufferError, match="still point into it"):
        s.close()
    del view
    with pytest.raises(BufferError):
        s.close()
    del arr
    s.close()
    assert s.closed
    s.close()                               # idempotent
    with pytest.raises(ValueError, match="closed"):
        s.regions
    with pytest.raises(ValueError, match="closed"):
        s.region("core.state")


def test_region_argument_checks(seg):
    with pytest.raises(ValueError, match="no region 'nope'"):
        seg.region("nope")
    with pytest.raises(ValueError, match="out of range"):
        seg.region(99)
    with pytest.raises(TypeError):
        seg.region(1.5)
    assert len(seg.region(0)) == seg.regions[0].size


# -- frames -------------------------------------------------------------------


@pytest.mark.parametrize("worker", mcpcore.WORKERS)
def test_ping_each_worker(runtime, seg, worker):
    pong = seg.ping(worker)
    assert isinstance(pong, Control)
    assert pong.op == Control.PONG
    assert pong.worker == worker
    assert pong.pid == runtime.worker(worker)["pid"]
    assert pong.generation >= 1
    assert pong.sent_ns <= time.monotonic_ns()


def test_messages_are_handled(seg):
    before = seg.ping("router").handled
    ring = seg.open_ring("router", "producer")
    assert ring.name == "%s->router" % seg.slots()[seg.slot]["name"]
    sent = [
        MCPMessage(timestamp=time.time_ns(), message_type="tools/list",
                   payload=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
                   metadata={"session": "pytest"}),
        LearningData(source="pytest", features=[1.0, 2.5], label=1.0),
        LearningModel(model_id="m", version=3, model_data=b"\0" * 100,
                      performance_metrics={"acc": 0.9}, parent_versions=[1, 2]),
        TrainingData(dataset="d", samples=[LearningData(features=[0.5])]),
        b"raw bytes",
    ]
    seqs = [ring.send(m) for m in sent]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # the first ping and the five frames are all handled (the router
    # answers pings at once, ahead of the frames it holds in its lanes)
    deadline = time.monotonic() + 5
    while True:
        after = seg.ping("router").handled
        if after >= before + 1 + len(sent) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert after >= before + 1 + len(sent)


def test_ten_thousand_pings(seg):
    for _ in range(10_000):
        pong = seg.ping("state")
        assert pong.op == Control.PONG
    assert seg.open_ring("state", "producer").depth == 0
    assert seg.open_ring("state", "consumer").depth == 0


def test_threads_share_a_segment(seg):
    errors = []

    def pinger(worker):
        try:
            for _ in range(200):
                assert seg.ping(worker).worker == worker
        except Exception as exc:        # reported below, with the thread's worker
            errors.append((worker, exc))

    threads = [threading.Thread(target=pinger, args=(w,)) for w in mcpcore.WORKERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_forked_child_claims_its_own_slot(runtime):
    child = run_python("""
        import os, sys, mcpcore
        s = mcpcore.attach(sys.argv[1])
        parent_slot = s.claim()
        pid = os.fork()
        if pid == 0:
            # the inherited slot is the parent's: not ours to use or release
            assert s.slot is None
            assert s.ping("router").worker == "router"
            print("child", s.slot, flush=True)
            s.close()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        assert s.slot == parent_slot
        assert parent_slot in [c["slot"] for c in s.clients]
        assert s.ping("state").worker == "state"
        print("parent", parent_slot, flush=True)
        """, runtime.instance)
    assert child.returncode == 0, child.stderr
    lines = dict(line.split() for line in child.stdout.splitlines())
    assert lines["child"] != lines["parent"]


def test_ping_keeps_other_frames_for_recv(seg):
    # white box: a frame ping() set aside (workers only send PONGs today)
    back = seg.open_ring("state", "consumer")
    kept = LearningData(source="kept", features=[1.0])
    seg._backlog.setdefault(back.index, collections.deque()).append(
        mcpcore.Frame(back.src, mcpcore.KIND_LEARNING_DATA, kept.SerializeToString(), 1))
    assert seg.ping("state", timeout=2.0).worker == "state"    # not stuck on it
    assert back.recv(timeout=0) == kept
    assert back.recv(timeout=0) is None


def test_ring_views(seg):
    out = seg.open_ring("protocol", "producer")
    back = seg.open_ring("protocol", "consumer")
    me = seg.slots()[seg.slot]["name"]
    assert (out.name, out.src, out.peer) == ("%s->protocol" % me, seg.slot, "protocol")
    assert (back.name, back.dst, back.peer) == ("protocol->%s" % me, seg.slot, "protocol")
    assert out.capacity == seg.header()["ring_entries"] - 1
    assert seg.open_ring(out.name, "producer") is out
    with pytest.raises(ValueError, match="open it as consumer"):
        out.recv(timeout=0)
    with pytest.raises(ValueError, match="open it as producer"):
        back.send(b"x")
    assert back.recv(timeout=0) is None


def test_open_ring_rejects_foreign_rings(seg):
    seg.claim()
    me = seg.slots()[seg.slot]["name"]
    with pytest.raises(ValueError, match="does not start at this process's slot %s" % me):
        seg.open_ring("state->router", "producer")
    with pytest.raises(ValueError, match="does not end at this process's slot %s" % me):
        seg.open_ring("state->router", "consumer")
    with pytest.raises(ValueError, match="does not end at this process's slot %s" % me):
        seg.open_ring("%s->state" % me, "consumer")
    other = next(s["name"] for s in seg.slots() if s["kind"] == "client" and s["slot"] != seg.slot)
    with pytest.raises(ValueError, match="does not start at this process's slot %s" % me):
        seg.open_ring("%s->state" % other, "producer")
    with pytest.raises(ValueError, match="no ring or worker"):
        seg.open_ring("nosuch", "producer")
    with pytest.raises(ValueError, match="no ring named"):
        seg.open_ring("%s->%s" % (me, other), "producer")
    with pytest.raises(ValueError, match="mode"):
        seg.open_ring("state", "sideways")
    with pytest.raises(TypeError):
        seg.open_ring(3, "producer")


def test_oversize_frame(seg):
    ring = seg.open_ring("monitor", "producer")
    limit = seg.max_frame
    assert limit == seg.header()["max_frame"]
    with pytest.raises(ValueError, match=r"%d bytes exceeds max_message_size \(%d bytes\)"
                       % (limit + 1, limit)):
        ring.send(b"\0" * (limit + 1))
    big = MCPMessage(message_type="big", payload=b"x" * limit)
    with pytest.raises(ValueError, match="exceeds max_message_size"):
        ring.send(big)
    before = seg.ping("monitor").handled
    ring.send(b"\0" * limit)                # exactly the limit is fine
    assert seg.ping("monitor").handled >= before + 2
    with pytest.raises(TypeError, match="mcpcore.proto"):
        ring.send(object())


def test_send_recv_argument_checks(seg):
    low = seg._seg
    slot = seg.claim()
    assert seg.claim() == slot              # idempotent
    with pytest.raises(ValueError, match="must be another slot"):
        low.send(low.nslots, 0, b"")
    with pytest.raises(ValueError, match="must be another slot"):
        low.send(slot, 0, b"")
    with pytest.raises(ValueError, match="no ring leads"):
        low.send(0, 0, b"")                  # the supervisor has no rings
    other = next(s["slot"] for s in seg.slots() if s["kind"] == "client" and s["slot"] != slot)
    with pytest.raises(ValueError, match="clients exchange frames with workers only"):
        low.send(other, 0, b"")
    with pytest.raises(ValueError, match="kind"):
        low.send(1, 70000, b"")
    with pytest.raises(TypeError):
        low.send(1, 0, "not bytes")
    with pytest.raises(ValueError, match="timeout"):
        low.recv(-1, -1.0)
    with pytest.raises(TypeError, match="timeout"):
        low.recv(-1, "soon")
    foreign = next(r["index"] for r in seg.rings if r["dst"] != slot)
    with pytest.raises(ValueError, match="does not lead to this process's slot"):
        low.recv(foreign, 0)
    with pytest.raises(ValueError, match="out of range"):
        low.recv(10_000, 0)
    with pytest.raises(ValueError, match="label"):
        mcpcore.attach(seg.instance).claim("has space")


def test_recv_timeout_releases_gil(seg):
    ring = seg.open_ring("persistence", "consumer")
    count = 0
    stop = threading.Event()

    def spin():
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = count
        t0 = time.monotonic()
        assert ring.recv(timeout=0.5) is None
        elapsed = time.monotonic() - t0
        during = count - before
    finally:
        stop.set()
        t.join()
    assert 0.45 <= elapsed < 2.5
    # The other thread ran while we waited: ~10M loops/s when it has a CPU,
    # so ~5M in 0.5 s.  Holding the GIL would leave it a switch interval or
    # two (5 ms each), ~150k loops at most.
    assert during > 1_000_000, during


def test_ctrl_c_interrupts_recv(runtime):
    child = spawn_python("""
        import sys, mcpcore
        s = mcpcore.attach(sys.argv[1])
        ring = s.open_ring("state", "consumer")
        print("ready", flush=True)
        ring.recv()                          # forever
        """, runtime.instance)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=5)
        assert time.monotonic() - t0 < 2.0
    finally:
        child.kill()
        child.wait()
    assert "KeyboardInterrupt" in err
    assert child.returncode != 0


def test_full_error_and_drain(runtime, seg):
    """Fill the ring to a stopped worker, then let it drain: every ping answered."""
    worker = "monitor"
    pid = runtime.worker(worker)["pid"]
    out = seg.open_ring(worker, "producer")
    back = seg.open_ring(worker, "consumer")
    seg.ping(worker)
    handled = seg.ping(worker).handled
    os.kill(pid, signal.SIGSTOP)
    nonces = []
    try:
        with pytest.raises(mcpcore.FullError, match="back-pressure") as info:
            for nonce in range(1, 100_000):
                out.send(Control(op=Control.PING, nonce=nonce, sent_ns=time.monotonic_ns()))
                nonces.append(nonce)
        assert out.name in str(info.value)
        assert len(nonces) == out.capacity
        assert out.depth == out.capacity
    finally:
        os.kill(pid, signal.SIGCONT)
    answered = set()
    deadline = time.monotonic() + 10
    while len(answered) < len(nonces) and time.monotonic() < deadline:
        pong = back.recv(timeout=max(deadline - time.monotonic(), 0))
        if pong is not None:
            assert pong.op == Control.PONG and pong.worker == worker
            answered.add(pong.nonce)
    assert answered == set(nonces)
    assert out.depth == 0 and back.depth == 0
    pong = seg.ping(worker)
    assert pong.pid == pid                  # not killed as hung meanwhile
    assert pong.handled >= handled + 1 + len(nonces)


def test_killed_client_is_reaped(runtime, seg):
    child = spawn_python("""
        import sys, time, mcpcore
        s = mcpcore.attach(sys.argv[1])
        print(s.claim("victim"), flush=True)
        time.sleep(60)
        """, runtime.instance)
    try:
        slot = int(child.stdout.readline())
        clients = {c["slot"]: c for c in runtime.status()["clients"]}
        assert clients[slot]["pid"] == child.pid
        assert clients[slot]["label"] == "victim"
        assert seg.slots()[slot]["state"] == "attached"
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        if slot not in {c["slot"] for c in runtime.status()["clients"]}:
            break
        time.sleep(0.05)
    else:
        pytest.fail("slot %d of a SIGKILLed client not reaped within 3 s" % slot)
    entry = seg.slots()[slot]
    assert entry["state"] == "free" and entry["pid"] == 0


def test_no_free_slot(runtime):
    held = []
    try:
        with pytest.raises(mcpcore.NoSlotError, match="max_clients"):
            for _ in range(64):
                s = mcpcore.attach(runtime.instance)
                held.append(s)
                s.claim("filler")
        # every client slot is taken now (by us, and by the seg fixture if any)
        assert len(held[0].clients) == held[0].header()["max_clients"]
    finally:
        for s in held:
            s.close()
    # released on close: a slot is free again
    with mcpcore.attach(runtime.instance) as s:
        s.claim()


def test_readonly_attach(runtime):
    with mcpcore.attach(runtime.instance, readonly=True) as ro:
        assert ro.readonly
        view = ro.region("learning.models")
        assert view.readonly
        arr = numpy.frombuffer(view, dtype=numpy.uint8)
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 1
        with pytest.raises(TypeError):
            view[0] = 1
        with pytest.raises(mcpcore.Error, match="read-only"):
            ro.claim()
        with pytest.raises(mcpcore.Error, match="read-only"):
            ro.open_ring("state", "producer")
        with pytest.raises(mcpcore.Error, match="read-only"):
            ro.ping("state")
        with pytest.raises(mcpcore.Error, match="read-only"):
            ro._seg.send(1, 0, b"x")
        assert [w["state"] for w in ro.workers] == ["running"] * 5
        del arr, view


# -- errors -------------------------------------------------------------------


def test_no_segment_error():
    instance = "pytnone" + secrets.token_hex(4)
    with pytest.raises(mcpcore.NoSegmentError) as info:
        mcpcore.attach(instance)
    assert instance in str(info.value)
    assert "not running" in str(info.value)
    assert isinstance(info.value, mcpcore.Error) and isinstance(info.value, OSError)


def test_bad_instance_names():
    with pytest.raises(ValueError, match="A-Za-z0-9"):
        mcpcore.attach("../etc")
    with pytest.raises(ValueError):
        mcpcore.attach("x" * 48)
    with pytest.raises(TypeError):
        mcpcore.attach(42)


@pytest.fixture
def fake_segment():
    """A file in /dev/shm where a segment would be; removed afterwards."""
    instance = "pytfake" + secrets.token_hex(4)
    path = shm_path(instance)

    def make(data):
        path.write_bytes(data)
        os.chmod(path, 0o600)
        return instance

    yield make
    path.unlink(missing_ok=True)


def test_abi_mismatch(fake_segment):
    # the header's identity: magic, ABI version, header size, segment size
    hdr = struct.pack("<QIIQ", SEG_MAGIC, 99, HDR_SIZE, HDR_SIZE)
    instance = fake_segment(hdr + b"\0" * (HDR_SIZE - len(hdr)))
    with pytest.raises(mcpcore.AbiError) as info:
        mcpcore.attach(instance)
    msg = str(info.value)
    assert "ABI version 99" in msg and "ABI %d" % mcpcore._mcpcore.ABI in msg
    assert instance in msg


def test_garbage_segment(fake_segment):
    instance = fake_segment(b"\xde\xad\xbe\xef" * (HDR_SIZE // 4))
    with pytest.raises(mcpcore.NotRunningError, match="not initialised"):
        mcpcore.attach(instance)


def test_truncated_segment(fake_segment):
    instance = fake_segment(b"")
    with pytest.raises(mcpcore.NotRunningError, match="not initialised"):
        mcpcore.attach(instance)


def test_permission_denied(runtime):
    if os.geteuid() == 0:
        # root bypasses file modes: attach as nobody to root's 0600 segment
        child = run_python("""
            import os, sys, mcpcore
            os.setgid(65534)
            os.setuid(65534)
            try:
                mcpcore.attach(sys.argv[1])
            except PermissionError as e:
                print("PermissionError", e.errno, e)
            """, runtime.instance)
        assert child.returncode == 0, child.stderr
        assert child.stdout.startswith("PermissionError 13 "), child.stdout + child.stderr
        assert "mcpcore." + runtime.instance in child.stdout
        assert "another user" in child.stdout
    else:
        instance = "pytperm" + secrets.token_hex(4)
        path = shm_path(instance)
        path.write_bytes(b"\0" * HDR_SIZE)
        try:
            os.chmod(path, 0)
            with pytest.raises(PermissionError, match="another user"):
                mcpcore.attach(instance)
        finally:
            path.unlink()
