"""The monitor worker end to end, on real `mcpcore run` processes.

- /metrics of a running instance with traffic passes `promtool check
  metrics` (no parse error, no lint finding);
- a real Prometheus (Debian's prometheus package) started on loopback with
  the repo's config/prometheus.yml scrapes it: up is 1, and counters move
  by exactly the number of frames the test sent (the ring totals from the
  test's client slots to the state worker, which the monitor derives from
  the ring cursors, and the state worker's handled Control messages);
- the endpoint's HTTP behaviour (404, 405, 400, HEAD, keep-alive, many
  concurrent scrapers, serving on after bad input);
- `mcpcore status` shows the same figures; counters carry over a worker
  restart; snapshot frames reach the persistence worker; a taken port is
  retried without the monitor crash-looping.

Traffic comes from `mcpcore ping`, which sends --count Control pings to
each worker (or just the one named).  No Python binding is imported here,
so the suite also runs against the sanitizer build.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from conftest import SOURCE, mcpcore, write_config

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
REPO_SCRAPE_CONFIG = os.path.join(SOURCE, "config", "prometheus.yml")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def monitor_config(tmp_path, port, interval=1):
    return write_config(tmp_path, {"monitor.listen": f'"127.0.0.1:{port}"',
                                   "monitor.snapshot_interval": str(interval)})


def scrape(port, path="/metrics", timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return r.read().decode()


def wait_scrape(port, timeout=10):
    end = time.monotonic() + timeout
    while True:
        try:
            return scrape(port)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$")


def series(text):
    """{"name{labels}": value} of every sample line."""
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[m.group(1)] = float(m.group(2))
    return out


def ping(rt, count, worker=None):
    args = ["ping", *([worker] if worker else []), "--instance", rt.instance,
            "--count", str(count), "--json"]
    r = mcpcore(*args, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["results"]


def raw_http(port, data, read_until_close=True, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
            if not read_until_close:
                break
        return b"".join(chunks)


@pytest.fixture
def monitored(runtime, tmp_path):
    """A runtime whose monitor listens on a free port (snapshots every second)."""
    port = free_port()
    rt = runtime(config=monitor_config(tmp_path, port))
    rt.port = port
    wait_scrape(port)
    return rt


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) missing")
def test_exposition_passes_promtool_with_traffic(monitored):
    ping(monitored, 20)
    time.sleep(1.2)                 # a rate tick and a snapshot happen
    text = scrape(monitored.port)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"promtool: {r.stdout}{r.stderr}\n{text}"
    s = series(text)
    for w in ("state", "persistence", "monitor", "router", "protocol"):
        assert s[f'mcpcore_worker_up{{worker="{w}"}}'] == 1
        assert s[f'mcpcore_frames_received_total{{worker="{w}"}}'] >= 20
        assert s[f'mcpcore_frames_sent_total{{worker="{w}"}}'] >= 20
        assert s[f'mcpcore_pool_bytes_written_total{{worker="{w}"}}'] >= 20 * 64
        # every worker's block has the handling histogram; workers that run
        # their own loop (persistence) fill it themselves, if at all
        assert f'mcpcore_frame_handling_seconds_count{{worker="{w}"}}' in s
        assert s[f'mcpcore_worker_restarts_total{{worker="{w}"}}'] == 0
    assert s['mcpcore_frame_handling_seconds_count{worker="monitor"}'] >= 20
    # workers on the common loop count handled messages by kind
    for w in ("state", "monitor"):
        assert s[f'mcpcore_messages_handled_total{{worker="{w}",kind="Control"}}'] >= 20
    assert 'mcpcore_ring_depth{src="state",dst="router"}' in s
    assert 'mcpcore_ring_frames_total{src="state",dst="router"}' in s
    # the ping client's slot is gone, its rings' totals stay
    clients = [k for k in s if k.startswith('mcpcore_ring_frames_total{src="client')]
    assert sum(s[k] for k in clients if 'dst="state"' in k) >= 20, clients
    for retired in ("mcpcore_frame_sent_bytes_total", "mcpcore_frame_received_bytes_total"):
        assert not any(k.startswith(retired) for k in s)
    assert s['mcpcore_region_size_bytes{region="shared.rings"}'] == 4194304
    # the repo's scrape config is valid too
    r = subprocess.run([PROMTOOL, "check", "config", REPO_SCRAPE_CONFIG], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def prom_query(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.load(r)
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def prom_value(port, query):
    res = prom_query(port, query)
    return None if not res else float(res[0]["value"][1])


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian package) missing")
def test_real_prometheus_scrapes_the_instance(monitored, tmp_path):
    prom_port = free_port()
    text = open(REPO_SCRAPE_CONFIG).read()
    assert "127.0.0.1:9464" in text, "the repo's scrape config targets the default listen"
    # the repo's config, pointed at this instance and scraping every second
    text = text.replace("127.0.0.1:9464", f"127.0.0.1:{monitored.port}")
    text = re.sub(r"scrape_interval: *\S+", "scrape_interval: 1s", text)
    text = re.sub(r"scrape_timeout: *\S+", "scrape_timeout: 1s", text)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text)
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 60
        up = None
        while time.monotonic() < end:
            try:
                up = prom_value(prom_port, 'up{job="mcpcore"}')
            except OSError:
                up = None
            if up == 1:
                break
            assert prom.poll() is None, open(tmp_path / "prometheus.log").read()
            time.sleep(0.2)
        assert up == 1, f"up = {up}\n{open(tmp_path / 'prometheus.log').read()}"

        # the ring totals from client slots to the state worker: only the
        # test's pings travel there (a client slot that never sent has no
        # series while free, hence "or vector(0)")
        query = 'sum(mcpcore_ring_frames_total{src=~"client.*",dst="state"}) or vector(0)'
        handled = 'mcpcore_messages_handled_total{worker="state",kind="Control"}'
        before = None
        while before is None and time.monotonic() < end:
            before = prom_value(prom_port, query)
            time.sleep(0.2)
        assert before is not None
        ping(monitored, 1, worker="state")      # the state worker registers its Control counter
        end = time.monotonic() + 30
        while time.monotonic() < end and prom_value(prom_port, handled) is None:
            time.sleep(0.2)
        while time.monotonic() < end and prom_value(prom_port, query) != before + 1:
            time.sleep(0.2)
        before = prom_value(prom_port, query)
        handled_before = prom_value(prom_port, handled)
        assert handled_before is not None, "the handled counter is exported"
        n = 17
        ping(monitored, n, worker="state")
        end = time.monotonic() + 30
        after = before
        while time.monotonic() < end and after != before + n:
            time.sleep(0.2)
            after = prom_value(prom_port, query)
        assert after == before + n, f"moved by {after - before}, sent {n}"
        while time.monotonic() < end and prom_value(prom_port, handled) != handled_before + n:
            time.sleep(0.2)
        time.sleep(2.5)             # two more scrapes: nothing else moved them
        assert prom_value(prom_port, query) == before + n
        assert prom_value(prom_port, handled) == handled_before + n
        # histogram buckets make quantiles in PromQL
        q = prom_value(prom_port, 'histogram_quantile(0.5, mcpcore_frame_handling_seconds_bucket'
                                  '{worker="state"})')
        assert q is not None and 0 < q < 1
        # every query of the repo's Grafana dashboard is valid PromQL here
        dash = json.load(open(os.path.join(SOURCE, "config", "grafana", "mcpcore.json")))
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        assert len(exprs) >= 15
        for expr in exprs:
            prom_query(prom_port, expr.replace("$job", "mcpcore"))
        assert prom_query(prom_port, 'mcpcore_frames_received_total{job="mcpcore"}')
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(20)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


def test_http_behaviour(monitored):
    port = monitored.port
    r = raw_http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 404 Not Found\r\n"), r
    r = raw_http(port, b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET, HEAD\r\n" in r, r
    r = raw_http(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in r, r
    r = raw_http(port, b"GET /metrics HTTP/1.1\r\n\r\n")              # no Host
    assert r.startswith(b"HTTP/1.1 400 "), r
    r = raw_http(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = r.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"" and b"Content-Length: " in head
    # keep-alive: three requests, three answers, one connection
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        for _ in range(3):
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            status = f.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = None
            while True:
                line = f.readline()
                if line == b"\r\n":
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert b"mcpcore_worker_up" in f.read(length)
    # many concurrent scrapers
    results = []

    def one():
        try:
            results.append("mcpcore_instance_info" in scrape(port, timeout=20))
        except OSError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 50, results
    s = series(scrape(port))
    assert s['mcpcore_monitor_http_responses_total{worker="monitor",code="404"}'] >= 1
    assert s['mcpcore_monitor_http_responses_total{worker="monitor",code="405"}'] >= 1
    assert s['mcpcore_monitor_http_responses_total{worker="monitor",code="400"}'] >= 2
    assert s['mcpcore_monitor_http_responses_total{worker="monitor",code="200"}'] >= 54


def test_status_shows_the_same_figures(monitored):
    ping(monitored, 5)
    time.sleep(1.5)                 # the monitor publishes rates every second
    st = monitored.status()
    assert st["monitor"] == {"listen": f"127.0.0.1:{monitored.port}", "path": "/metrics"}
    for w in st["workers"]:
        assert w["frames_in"] >= 5 and w["frames_out"] >= 5, w
        assert w["pool_bytes_written"] >= 5 * 64, w
        assert w["bytes_in"] is None and w["bytes_out"] is None, "no longer measured"
        assert isinstance(w["handled"], int) and w["handler_errors"] == 0
        if w["handled"]:
            assert 0 < w["handling_p50_us"] <= w["handling_p99_us"]
        else:
            assert w["handling_p50_us"] is None
        assert isinstance(w["frames_in_per_s"], float)
        # jemalloc figures where the binary has jemalloc (not the sanitizer build)
        assert w["memory_allocated"] is None or w["memory_allocated"] > 0
    mon = next(w for w in st["workers"] if w["name"] == "monitor")
    assert mon["handled"] >= 5 and mon["handling_p99_us"] > 0
    assert st["supervisor"]["frames_in"] == 0, "the supervisor has no rings"
    # the same cursors, read between two scrapes
    s1 = series(scrape(monitored.port))
    state = next(w for w in monitored.status()["workers"] if w["name"] == "state")
    s2 = series(scrape(monitored.port))
    for field, name in (("frames_in", "frames_received_total"), ("frames_out", "frames_sent_total"),
                        ("pool_bytes_written", "pool_bytes_written_total")):
        key = f'mcpcore_{name}{{worker="state"}}'
        assert s1[key] <= state[field] <= s2[key], (field, s1[key], state[field], s2[key])
    human = mcpcore("status", "--instance", monitored.instance)
    assert human.returncode == 0
    assert "METRICS" in human.stdout and "FRAMES_IN" in human.stdout and "P99_US" in human.stdout


def test_counters_carry_over_a_restart(monitored):
    ping(monitored, 10, worker="state")
    q = 'mcpcore_frames_received_total{worker="state"}'
    handled = 'mcpcore_messages_handled_total{worker="state",kind="Control"}'
    before = series(scrape(monitored.port))[q]
    handled_before = series(scrape(monitored.port))[handled]
    hist = 'mcpcore_frame_handling_seconds_count{worker="state"}'
    hist_before = series(scrape(monitored.port))[hist]
    old = monitored.worker("state")
    os.kill(old["pid"], signal.SIGKILL)
    monitored.wait_for(lambda st: any(w["name"] == "state" and w["restarts"] == 1 and
                                      w["state"] == "running" for w in st["workers"]),
                       10, "state restarted")
    s = series(scrape(monitored.port))
    assert s[q] >= before, "a restart is not a counter reset"
    assert s[handled] >= handled_before
    assert s[hist] >= hist_before
    assert s['mcpcore_worker_restarts_total{worker="state"}'] == 1
    ping(monitored, 3, worker="state")
    assert series(scrape(monitored.port))[q] >= s[q] + 3


def test_ring_totals_survive_a_monitor_restart(monitored):
    ping(monitored, 10, worker="state")
    q = 'mcpcore_frames_received_total{worker="state"}'
    before = series(scrape(monitored.port))[q]
    os.kill(monitored.worker("monitor")["pid"], signal.SIGKILL)
    monitored.wait_for(lambda st: any(w["name"] == "monitor" and w["restarts"] == 1 and
                                      w["state"] == "running" for w in st["workers"]),
                       10, "monitor restarted")
    ping(monitored, 4, worker="state")
    assert series(wait_scrape(monitored.port))[q] >= before + 4


def test_snapshots_reach_persistence(monitored):
    end = time.monotonic() + 15
    s = {}
    while time.monotonic() < end:
        s = series(scrape(monitored.port))
        if s.get('mcpcore_monitor_snapshots_total{worker="monitor",result="sent"}', 0) >= 2:
            break
        time.sleep(0.3)
    sent = s['mcpcore_monitor_snapshots_total{worker="monitor",result="sent"}']
    assert sent >= 2
    # only snapshots travel from the monitor to persistence
    assert s['mcpcore_ring_frames_total{src="monitor",dst="persistence"}'] == sent


def test_a_taken_port_is_retried_not_crash_looped(runtime, tmp_path):
    port = free_port()
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hog.bind(("127.0.0.1", port))
    hog.listen(1)
    try:
        rt = runtime(config=monitor_config(tmp_path, port))
        time.sleep(1)
        assert rt.worker("monitor")["restarts"] == 0
        assert rt.worker("monitor")["state"] == "running"
        fails = rt.events("monitor_listen_failed")
        assert len(fails) == 1 and fails[0]["listen"] == f"127.0.0.1:{port}", fails
    finally:
        hog.close()
    text = wait_scrape(port, timeout=10)
    assert "mcpcore_worker_up" in text
    assert rt.events("monitor_listening")


def test_log_lines_are_json_with_the_common_fields(monitored):
    ping(monitored, 1)
    lines = [l for l in monitored.read_log().splitlines() if l.strip()]
    assert lines
    for line in lines:
        ev = json.loads(line)
        for key in ("time", "level", "component", "pid", "event"):
            assert key in ev, line
    assert any(e["component"] == "monitor" for e in monitored.events("monitor_listening"))
