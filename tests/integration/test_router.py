"""The router worker end to end (issue 4, workers/router/mc_router.h).

A real runtime, a real MCP client over HTTP, and a Python learning client
subscribed to the router: every JSON-RPC message and every response
reaches the subscriber and the persistence store as an MCPMessage, with
the correlation id the protocol worker gave it; the same id is in the log
lines of every process the message went through; a subscriber that stops
reading is dropped, loudly, and the front door keeps serving; a router
killed with -9 comes back with its subscribers and loses nothing.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import MCPCORE
from test_mcp import SCALE
from test_mcp import Client, serving

mcpcore = pytest.importorskip("mcpcore")


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("router"), {"log.level": '"debug"'}) as r:
        yield r


def records(ring, want, timeout=10.0):
    """Read MCPMessage records from ring until pred(list) or timeout."""
    got = []
    end = time.monotonic() + timeout * SCALE
    while time.monotonic() < end and not want(got):
        msg = ring.recv(timeout=0.2)
        if msg is not None and type(msg).__name__ == "MCPMessage":
            got.append(msg)
    return got


def meta(msg):
    return dict(msg.metadata)


def test_every_message_reaches_subscribers_and_store_with_its_correlation_id(rt):
    with mcpcore.attach(rt.instance) as seg:
        ring = seg.subscribe()
        c = Client(rt.port)
        c.initialize()
        doc = c.call("state_set", {"namespace": "router", "key": "k1", "value": "v1"})
        assert doc["result"]["isError"] is False, doc
        doc = c.call("state_get", {"namespace": "router", "key": "k1"})
        assert "v1" in json.dumps(doc), doc
        # initialize, initialized, 2 tool calls: one record each, sent
        # with its answer (a notification's is "accepted": HTTP 202)
        t_before = time.time_ns()
        got = records(ring, lambda g: len(g) >= 4)
        # nothing more comes: one record per message, not one per direction
        got += records(ring, lambda g: False, timeout=0.5)
        c.close()
    # lanes reorder records (lifecycle before tool calls), so compare as sets
    types = sorted((m.message_type, meta(m)["reply"]) for m in got)
    assert types == sorted([("initialize", "response"),
                            ("notifications/initialized", "accepted"),
                            ("tools/call", "response"), ("tools/call", "response")]), types
    by_corr = {meta(m)["correlation_id"]: m for m in got}
    assert len(by_corr) == 4     # initialize, initialized, set, get
    calls = [m for m in got if m.message_type == "tools/call"]
    set_rec = next(m for m in calls if b"state_set" in m.payload)
    get_rec = next(m for m in calls if b"state_get" in m.payload)
    init = next(m for m in got if m.message_type == "notifications/initialized")
    assert meta(init)["outcome"] == "ok"
    sid = c.sid
    for m in got:
        if m.message_type != "initialize":      # the one message before the session
            assert meta(m)["session"] == sid
        # the timestamp is the message's arrival, before its answer
        assert 0 < m.timestamp < t_before, (m.timestamp, t_before)
        assert int(meta(m)["latency_ns"]) > 0
    corr = meta(set_rec)["correlation_id"]
    assert len(corr) == 16
    assert meta(set_rec)["outcome"] == "ok"
    assert b"state_set" in set_rec.payload and b"v1" in set_rec.payload
    assert meta(get_rec)["correlation_id"] != corr

    # the same id in the log lines of the protocol worker, the router and
    # the state worker (log.level debug in this runtime)
    deadline = time.monotonic() + 5 * SCALE
    while True:
        comps = {ev["component"] for ev in rt.events() if ev.get("correlation_id") == corr}
        if {"protocol", "router", "state"} <= comps or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {"protocol", "router", "state"} <= comps, comps

    # and in the store: persistence got the same records (its batches are
    # durable within a few ms; dump reads a consistent view)
    deadline = time.monotonic() + 10 * SCALE
    while True:
        out = subprocess.run([MCPCORE, "dump", "--cf", "messages", "--config", rt.config],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        stored = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        mine = [r for r in stored if corr in json.dumps(r)]
        if len(mine) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == 1, mine


def metrics_text(rt):
    """The monitor's /metrics exposition (its port is in the config)."""
    import re
    import urllib.request
    cfg = open(rt.config).read()
    sect = cfg[cfg.index("[monitor]"):]
    port = int(re.search(r'listen\s*=\s*"[^"]*:(\d+)"', sect).group(1))
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def sample(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") and all('%s="%s"' % kv in line for kv in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_monitor_counts_the_messages_it_is_copied(rt):
    before = metrics_text(rt)
    calls0 = sample(before, "mcpcore_mcp_messages_total", direction="in", type="tools/call") or 0
    c = Client(rt.port)
    c.initialize()
    for i in range(3):
        c.call("state_set", {"namespace": "router", "key": "m%d" % i, "value": "x"})
    st, _, doc = c.request("tools/call", {"name": "state_get", "arguments": {}})
    assert doc["error"]["code"] == -32602
    c.close()
    # the records arrive lane by lane: wait for the last (a bulk response)
    deadline = time.monotonic() + 5 * SCALE
    while True:
        text = metrics_text(rt)
        calls = sample(text, "mcpcore_mcp_messages_total", direction="in", type="tools/call")
        errors = sample(text, "mcpcore_mcp_errors_total", outcome="error -32602") or 0
        timed = sample(text, "mcpcore_mcp_request_seconds_count") or 0
        if (calls == calls0 + 4 and errors >= 1 and timed >= 5) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert calls == calls0 + 4, calls
    assert errors >= 1, [line for line in text.splitlines() if "mcp_" in line]
    assert timed >= 5
    # the answers, from the same records: the failed get's was an error
    assert (sample(text, "mcpcore_mcp_messages_total", direction="out", type="error") or 0) >= 1


def test_a_subscriber_that_stops_reading_is_dropped_and_nothing_stalls(rt):
    with mcpcore.attach(rt.instance) as seg:
        seg.subscribe()
        c = Client(rt.port)
        c.initialize()
        # more records than the router's ring to us holds: it fills, the
        # router holds, and after 1 s drops the subscription
        end = time.monotonic() + 30 * SCALE
        n = 0
        while not rt.events("router_subscriber_dropped") and time.monotonic() < end:
            st, _, doc = c.request("ping")
            assert st == 200, doc
            n += 1
        assert rt.events("router_subscriber_dropped"), f"not dropped after {n} pings"
        ev = rt.events("router_subscriber_dropped")[-1]
        assert ev["slot"] == seg.slot
        # the front door serves on, at full speed again
        t0 = time.monotonic()
        for _ in range(50):
            st, _, _ = c.request("ping")
            assert st == 200
        assert time.monotonic() - t0 < 5 * SCALE
        c.close()


def test_router_kill9_keeps_subscribers_and_loses_nothing(rt):
    with mcpcore.attach(rt.instance) as seg:
        ring = seg.subscribe()
        c = Client(rt.port)
        c.initialize()
        records(ring, lambda g: len(g) >= 2)        # initialize, initialized
        before = rt.worker("router")
        n = 40
        for i in range(n):
            if i == n // 2:
                os.kill(before["pid"], signal.SIGKILL)
            doc = c.call("state_set", {"namespace": "router", "key": f"kill{i}", "value": str(i)})
            assert doc["result"]["isError"] is False, doc
        rt.wait_for(lambda st: next(w for w in st["workers"] if w["name"] == "router")
                    ["restarts"] == before["restarts"] + 1, 10 * SCALE, "router restarted")
        got = records(ring, lambda g: len({meta(m)["correlation_id"] for m in g
                                           if m.message_type == "tools/call"}) >= n,
                      timeout=15.0)
        c.close()
    # at-least-once: a replayed forward may repeat a record, none is missing
    calls = {meta(m)["correlation_id"] for m in got if m.message_type == "tools/call"}
    assert len(calls) == n, len(calls)
    assert all(meta(m)["outcome"] == "ok" for m in got if m.message_type == "tools/call")
    with mcpcore.attach(rt.instance) as seg:
        for i in range(n):
            got = seg.state.get("router", f"kill{i}")
            assert got is not None and got.value.decode() == str(i), (i, got)
