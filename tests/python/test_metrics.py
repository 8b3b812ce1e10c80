"""The Python metrics API (seg.metrics, mcpcore/metrics.py over
bindings/python/metrics.c) and the JSON-lines log formatter
(mcpcore/jsonlog.py), against a real runtime (see conftest.py)."""

import io
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import mcpcore
from mcpcore import jsonlog

from conftest import PY_ENV, cli


def metric(block, name, labels=None):
    for m in block["metrics"]:
        if m["name"] == name and m["labels"] == (labels or {}):
            return m
    raise AssertionError("no metric %s %s in %s" % (name, labels, block["metrics"]))


def test_counter_gauge_histogram(runtime, seg):
    c = seg.metrics.counter("learner_batches_total", "Batches trained", {"model": "ranker"})
    c.inc()
    c.inc(41)
    assert seg.metrics.counter("learner_batches_total", "Batches trained",
                               {"model": "ranker"}) is c
    g = seg.metrics.gauge("learning_model_accuracy", "Accuracy of the current model")
    g.set(0.5)
    g.inc(0.25)
    g.dec(0.05)
    h = seg.metrics.histogram("learning_prediction_seconds", "Time per prediction")
    for v in (0.001, 0.002, 0.003):
        h.observe(v)
    with h.time():
        time.sleep(0.01)
    t = seg.metrics.counter("learning_training_seconds_total", "Training time")
    t.inc(1.25)
    rows = seg.metrics.histogram("batch_rows", "Rows per batch")
    rows.observe(1000)

    block = seg.metrics.read()
    assert block["slot"] == seg.slot and block["pid"] == os.getpid()
    assert metric(block, "learner_batches_total", {"model": "ranker"})["value"] == 42
    assert metric(block, "learning_model_accuracy")["value"] == pytest.approx(0.7)
    hist = metric(block, "learning_prediction_seconds")
    assert hist["unit"] == "seconds" and hist["count"] == 4
    assert hist["sum"] == pytest.approx(0.016, abs=0.01)
    assert hist["p50"] == pytest.approx(0.002, rel=mcpcore.METRICS_REL_ERROR)
    assert hist["max"] >= 0.01
    assert metric(block, "learning_training_seconds_total")["value"] == 1.25
    assert metric(block, "batch_rows")["sum"] == 1000 and metric(block, "batch_rows")["unit"] == ""


def test_quantiles_within_the_documented_bound(runtime, seg):
    rnd = random.Random(7)
    samples = [rnd.lognormvariate(-7, 2) for _ in range(20000)]     # seconds, ~1 ms median
    h = seg.metrics.histogram("learning_update_seconds", "Time per model update")
    for s in samples:
        h.observe(s)
    got = metric(seg.metrics.read(), "learning_update_seconds")
    exact = sorted(round(s * 1e9) for s in samples)                 # stored in ns
    for q, key in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        want = exact[max(1, math.ceil(q * len(exact))) - 1] / 1e9
        assert abs(got[key] - want) <= mcpcore.METRICS_REL_ERROR * want, (q, got[key], want)
    assert got["count"] == len(samples)


def test_bad_names_and_values(runtime, seg):
    with pytest.raises(ValueError, match="_total"):
        seg.metrics.counter("batches", "no _total")
    with pytest.raises(ValueError, match="snake_case"):
        seg.metrics.gauge("Accuracy", "camel")
    with pytest.raises(ValueError):
        seg.metrics.gauge("ok_gauge", "h", {"worker": "x"})      # reserved label
    with pytest.raises(ValueError):
        seg.metrics.gauge("ok_gauge", "")                        # help required
    seg.metrics.gauge("same_name", "a gauge")
    with pytest.raises(ValueError, match="another type"):
        seg.metrics.histogram("same_name", "now a histogram")
    c = seg.metrics.counter("things_total", "Things")
    with pytest.raises(ValueError):
        c.inc(-1)
    with pytest.raises(ValueError):
        c.inc(0.5)                                               # integers only
    with pytest.raises(TypeError):
        c.inc("1")
    h = seg.metrics.histogram("wait_seconds", "Wait")
    with pytest.raises(ValueError):
        h.observe(float("nan"))
    with pytest.raises(TypeError):
        seg.metrics.gauge("labelled", "h", {"a": 1})


def test_threads_do_not_lose_updates(runtime, seg):
    c = seg.metrics.counter("thread_hits_total", "Hits from threads")

    def work():
        for _ in range(2000):
            c.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metric(seg.metrics.read(), "thread_hits_total")["value"] == 8000


def test_a_new_claim_starts_a_new_block(runtime, seg):
    c = seg.metrics.counter("claims_total", "Counted across a re-claim")
    c.inc(5)
    first = seg.slot
    seg.release()
    assert seg.metrics.read(first) is None, "released: the block is retired"
    c.inc(2)                        # registers again in the new claim's block
    assert metric(seg.metrics.read(), "claims_total")["value"] == 2


def control_handled(seg, after, timeout=5):
    """The state worker's block once it has counted more than `after`
    Control messages (it counts one once its handler returned, which may be
    just after the PONG reached us), or at the timeout."""
    end = time.monotonic() + timeout
    while True:
        state = seg.metrics.read("state")
        if state["messages_handled"].get("Control", 0) > after or time.monotonic() > end:
            return state
        time.sleep(0.01)


def test_channel_figures_and_other_blocks(runtime, seg):
    counted = seg.metrics.read("state")["messages_handled"].get("Control", 0)
    seg.ping("state")               # claims the slot; frames from here on are ours
    before = seg.metrics.read()
    state_before = control_handled(seg, counted)    # that first ping counted, too
    for _ in range(3):
        seg.ping("state")
    mine = seg.metrics.read()
    # ring totals: exactly our pings and their pongs (nobody else uses our rings)
    assert mine["frames_sent"] - before["frames_sent"] == 3
    assert mine["frames_received"] - before["frames_received"] == 3
    assert mine["pool_bytes_written"] - before["pool_bytes_written"] >= 3 * 64
    assert mine["messages_handled"] == {}, "clients have no worker loop"
    assert "frames_in" not in mine and "bytes_out" not in mine, "retired fields"
    base = state_before["messages_handled"].get("Control", 0)
    state = control_handled(seg, base + 2)
    assert state["messages_handled"].get("Control", 0) - base == 3
    assert state["frames_received"] - state_before["frames_received"] >= 3
    names = {m["name"] for m in state["metrics"]}
    assert "frame_handling_seconds" in names and "messages_handled_total" in names
    assert seg.metrics.read("supervisor") is not None
    with pytest.raises(ValueError):
        seg.metrics.read("nosuchslot")
    # what `mcpcore status` shows for this client
    st = runtime.status()
    me = next(c for c in st["clients"] if c["slot"] == seg.slot)
    assert me["frames_out"] == mine["frames_sent"] and me["frames_in"] == mine["frames_received"]
    assert me["pool_bytes_written"] == mine["pool_bytes_written"]
    assert me["bytes_in"] is None and me["bytes_out"] is None, "no longer measured"


def test_read_only_attach_reads(runtime, seg):
    seg.metrics.gauge("visible_gauge", "Seen by a read-only reader").set(3)
    with mcpcore.attach(runtime.instance, readonly=True) as ro:
        block = ro.metrics.read(seg.slot)
        assert metric(block, "visible_gauge")["value"] == 3
        assert ro.metrics.read() is None        # no slot of its own


def test_a_dead_process_block_is_reclaimed(runtime, seg):
    code = textwrap.dedent("""
        import os, signal, sys, mcpcore
        seg = mcpcore.attach(sys.argv[1])
        seg.metrics.counter("doomed_total", "From a process about to die").inc(9)
        print(seg.slot, flush=True)
        sys.stdin.readline()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    child = subprocess.Popen([sys.executable, "-c", code, runtime.instance], env=PY_ENV,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    slot = int(child.stdout.readline())
    assert metric(seg.metrics.read(slot), "doomed_total")["value"] == 9
    child.stdin.write("\n")
    child.stdin.flush()
    child.wait(10)
    end = time.monotonic() + 10
    while seg.metrics.read(slot) is not None and time.monotonic() < end:
        time.sleep(0.05)
    assert seg.metrics.read(slot) is None, "the supervisor reaped the slot and its block"


def test_json_formatter_fields_and_correlation():
    out = io.StringIO()
    log = jsonlog.get_logger("unit-learner", stream=out)
    log.info("model %s saved", "ranker", extra={"event": "model_saved", "version": 7})
    with jsonlog.correlation("c0ffee"):
        log.warning("slow update")
    log.debug("not shown at info")
    lines = [json.loads(l) for l in out.getvalue().splitlines()]
    assert len(lines) == 2
    a, b = lines
    assert list(a)[:5] == ["time", "level", "component", "pid", "event"]
    assert a["level"] == "info" and a["component"] == "unit-learner" and a["pid"] == os.getpid()
    assert a["event"] == "model_saved" and a["message"] == "model ranker saved"
    assert a["version"] == 7 and "correlation_id" not in a
    assert a["time"].endswith("Z") and len(a["time"]) == len("2026-11-25T04:03:10.123456Z")
    assert b["level"] == "warn" and b["correlation_id"] == "c0ffee" and b["event"] == "log"


def test_log_level_environment_override():
    code = textwrap.dedent("""
        from mcpcore import jsonlog
        log = jsonlog.get_logger("envtest", level="error")
        log.debug("visible because of MCPCORE_LOG_LEVEL", extra={"event": "dbg"})
    """)
    env = dict(PY_ENV, MCPCORE_LOG_LEVEL="debug")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stderr.strip().splitlines()[-1])
    assert line["level"] == "debug" and line["event"] == "dbg"
