"""The protocol worker (issue 4): MCP over Streamable HTTP against a real
runtime, over real sockets.

- the lifecycle end to end: initialize, notifications/initialized,
  tools/list, tools/call state_set / state_get / state_cas / state_delete /
  state_scan / runtime_status, logging/setLevel, ping, DELETE;
- a malformed-input corpus: each case checked for its exact HTTP status
  and JSON-RPC error code, and for the server still serving afterwards;
- keep-alive, pipelining, the connection limit (503), timeouts;
- kill -9 of the protocol worker: the same Mcp-Session-Id keeps working;
- the official TypeScript SDK client (@modelcontextprotocol/sdk, installed
  with npm by the test itself into MC_MCP_NPM_PREFIX, default
  ~/.cache/mcpcore-npm; the build sets it to <build>/npm).

One runtime serves the whole module (on free ports, a private config).
"""
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import Runtime, assert_no_sanitizer_report, write_config

SCALE = float(os.environ.get("MC_TIME_SCALE", "1"))
MAX_CONN = 16
REQUEST_TIMEOUT_MS = 1000
MAX_MESSAGE = 1 << 20
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "pytest", "version": "1"}}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(tmp, overrides):
    """A runtime on a private config (store in tmp, free ports for MCP and
    /metrics, plus `overrides`), ready and listening; r.port is the MCP
    port.  Stopped, and its log checked for sanitizer reports, on exit."""
    port = free_port()
    cfg = write_config(tmp, {
        "persistence.rocksdb_path": '"%s"' % (tmp / "data"),
        "protocol.listen": '"127.0.0.1:%d"' % port,
        "monitor.listen": '"127.0.0.1:%d"' % free_port(),
        **overrides,
    })
    r = Runtime(tmp, config=cfg).start()
    r.port = port
    try:
        r.wait_ready(timeout=15 * SCALE)
        wait_listening(port)
        yield r
    finally:
        if r.proc.poll() is None:
            r.stop()
        r.kill()
        assert_no_sanitizer_report(r)


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("mcp"), {
        "protocol.request_timeout_ms": str(REQUEST_TIMEOUT_MS),
        "core.max_connections": str(MAX_CONN),
    }) as r:
        yield r


def wait_listening(port, timeout=10.0):
    end = time.monotonic() + timeout * SCALE
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listening on {port}")


# ---- a tiny MCP client ---------------------------------------------------------

class Client:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SCALE)
        self.sid = None
        self.next_id = 100

    def post(self, body, sid=True, headers=None, raw=False):
        h = {"Content-Type": "application/json",
             "Accept": "application/json, text/event-stream"}
        if sid is True and self.sid:
            h["Mcp-Session-Id"] = self.sid
        elif isinstance(sid, str):
            h["Mcp-Session-Id"] = sid
        h.update(headers or {})
        data = body if raw else json.dumps(body).encode()
        self.conn.request("POST", "/mcp", data, h)
        r = self.conn.getresponse()
        payload = r.read()
        doc = json.loads(payload) if payload and r.getheader("Content-Type", "").startswith(
            "application/json") else None
        return r.status, r, doc

    def request(self, method, params=None, **kw):
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            body["params"] = params
        return self.post(body, **kw)

    def notify(self, method, **kw):
        return self.post({"jsonrpc": "2.0", "method": method}, **kw)

    def initialize(self, ready=True):
        st, r, doc = self.post(INIT, sid=False)
        assert st == 200, doc
        self.sid = r.getheader("Mcp-Session-Id")
        assert self.sid and len(self.sid) == 32
        if ready:
            st, _, _ = self.notify("notifications/initialized")
            assert st == 202
        return doc

    def call(self, tool, args):
        st, _, doc = self.request("tools/call", {"name": tool, "arguments": args})
        assert st == 200, doc
        return doc

    def close(self):
        self.conn.close()


def assert_serves(rt, client=None):
    """The server still answers a ping on a fresh connection (and on client's)."""
    c = Client(rt.port)
    c.initialize()
    st, _, doc = c.request("ping")
    assert st == 200 and doc["result"] == {}, doc
    c.close()
    if client is not None:
        st, _, doc = client.request("ping")
        assert st == 200, doc


def raw(rt, data, read=True, timeout=5.0):
    """Send raw bytes on a new connection; return (status, headers+body text)."""
    s = socket.create_connection(("127.0.0.1", rt.port), timeout=timeout * SCALE)
    try:
        s.sendall(data)
        if not read:
            return None, ""
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            if b"\r\n\r\n" in buf:
                head, _, body = buf.partition(b"\r\n\r\n")
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(body) >= int(cl[0].split(b":")[1]):
                    break
        text = buf.decode("latin-1")
        status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/1.1 ") else None
        return status, text
    finally:
        s.close()


def body_of(text):
    return json.loads(text.partition("\r\n\r\n")[2])


# ---- the lifecycle end to end ------------------------------------------------------

def test_initialize_tools_and_state(rt):
    c = Client(rt.port)
    doc = c.initialize(ready=False)
    res = doc["result"]
    assert res["protocolVersion"] == "2025-06-18"
    assert "tools" in res["capabilities"] and "logging" in res["capabilities"]
    assert res["serverInfo"]["name"] == "mcpcore"
    # before notifications/initialized: ping yes, other requests no
    st, _, doc = c.request("ping")
    assert st == 200 and doc["result"] == {}
    st, _, doc = c.request("tools/list")
    assert st == 400 and doc["error"]["code"] == -32600
    assert "initialized" in doc["error"]["message"]
    st, _, _ = c.notify("notifications/initialized")
    assert st == 202

    st, _, doc = c.request("tools/list", headers={"MCP-Protocol-Version": "2025-06-18"})
    assert st == 200
    tools = {t["name"]: t for t in doc["result"]["tools"]}
    assert set(tools) == {"state_get", "state_set", "state_cas", "state_delete", "state_scan",
                          "runtime_status"}
    for t in tools.values():
        assert t["inputSchema"]["type"] == "object"

    doc = c.call("state_set", {"namespace": "mcp.test", "key": "k1", "value": "hello"})
    assert doc["result"]["isError"] is False
    v1 = doc["result"]["structuredContent"]["version"]
    doc = c.call("state_get", {"namespace": "mcp.test", "key": "k1"})
    sc = doc["result"]["structuredContent"]
    assert sc == {**sc, "found": True, "value": "hello", "version": v1}
    assert json.loads(doc["result"]["content"][0]["text"])["value"] == "hello"
    # the CLI sees what MCP wrote (same state manager)
    from conftest import mcpcore
    out = mcpcore("state", "get", "mcp.test", "k1", "--instance", rt.instance)
    assert out.returncode == 0 and out.stdout.strip() == "hello"

    doc = c.call("state_cas", {"namespace": "mcp.test", "key": "k1", "expected_version": 1,
                               "value": "x"})
    assert doc["result"]["structuredContent"] == {"swapped": False, "version": v1}
    doc = c.call("state_cas", {"namespace": "mcp.test", "key": "k1", "expected_version": v1,
                               "value": "world"})
    assert doc["result"]["structuredContent"]["swapped"] is True
    c.call("state_set", {"namespace": "mcp.test", "key": "k2", "value": "2"})
    doc = c.call("state_scan", {"namespace": "mcp.test", "prefix": "k"})
    items = {i["key"]: i["value"] for i in doc["result"]["structuredContent"]["items"]}
    assert items == {"k1": "world", "k2": "2"}
    doc = c.call("state_delete", {"namespace": "mcp.test", "key": "k2"})
    assert doc["result"]["structuredContent"] == {"deleted": True}
    doc = c.call("state_delete", {"namespace": "mcp.test", "key": "k2"})
    assert doc["result"]["isError"] is True          # a tool error, not a protocol error
    doc = c.call("state_get", {"namespace": "mcp.test", "key": "k2"})
    assert doc["result"]["structuredContent"] == {"found": False}
    doc = c.call("state_get", {"namespace": "mcp.session", "key": c.sid})
    assert doc["result"]["isError"] is True          # sessions are not readable through tools

    # over [state] max_value_size: a tool error, and the key is untouched
    doc = c.call("state_set", {"namespace": "mcp.test", "key": "k1", "value": "x" * 70000})
    assert doc["result"]["isError"] is True
    assert "bounds" in doc["result"]["content"][0]["text"]
    doc = c.call("state_get", {"namespace": "mcp.test", "key": "k1"})
    assert doc["result"]["structuredContent"]["value"] == "world"

    doc = c.call("runtime_status", {})
    status = doc["result"]["structuredContent"]
    names = {w["name"]: w for w in status["workers"]}
    assert names["protocol"]["state"] == "running" and "restarts" in names["protocol"]
    assert any(r["name"] == "protocol->state" for r in status["rings"])

    st, _, doc = c.request("logging/setLevel", {"level": "warning"})
    assert st == 200 and doc["result"] == {}
    c.close()


def test_delete_ends_the_session(rt):
    c = Client(rt.port)
    c.initialize()
    c.conn.request("DELETE", "/mcp", headers={"Mcp-Session-Id": c.sid})
    r = c.conn.getresponse()
    r.read()
    assert r.status == 200
    st, _, doc = c.request("ping")
    assert st == 404 and doc["error"]["code"] == -32001
    c.conn.request("DELETE", "/mcp", headers={"Mcp-Session-Id": c.sid})
    r = c.conn.getresponse()
    r.read()
    assert r.status == 404
    c.close()


def test_get_opens_an_sse_stream(rt):
    c = Client(rt.port)
    c.initialize()
    s = socket.create_connection(("127.0.0.1", rt.port), timeout=5 * SCALE)
    try:
        s.sendall(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                  b"Mcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-06-18\r\n\r\n"
                  % c.sid.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/event-stream\r\n" in head
        assert b"Content-Length" not in head
        # the stream stays open (nothing to say yet), and takes no requests
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(4096)
    finally:
        s.close()
    st, _, doc = c.request("ping")     # the session's POSTs are unaffected
    assert st == 200, doc
    assert_serves(rt)
    c.close()


def test_keep_alive_and_pipelining(rt):
    c = Client(rt.port)
    c.initialize()
    msgs = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in (1, 2, 3)]
    data = b""
    for m in msgs:
        body = json.dumps(m).encode()
        data += (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Accept: application/json, text/event-stream\r\nMcp-Session-Id: %s\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (c.sid.encode(), len(body), body))
    s = socket.create_connection(("127.0.0.1", rt.port), timeout=5 * SCALE)
    s.sendall(data)
    buf = b""
    end = time.monotonic() + 5 * SCALE
    while buf.count(b'"result"') < 3 and time.monotonic() < end:
        buf += s.recv(65536)
    s.close()
    assert buf.count(b"HTTP/1.1 200 OK") == 3
    assert [json.loads(p.split(b"\r\n\r\n", 1)[1])["id"] for p in
            buf.split(b"HTTP/1.1 ")[1:]] == [1, 2, 3]
    c.close()


def test_expect_100_continue(rt):
    c = Client(rt.port)
    c.initialize()
    body = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "ping"}).encode()
    s = socket.create_connection(("127.0.0.1", rt.port), timeout=5 * SCALE)
    try:
        s.sendall(GOOD_HEAD + b"Mcp-Session-Id: %s\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % (c.sid.encode(), len(body)))
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 OK") and b'"id":5' in got, got
    finally:
        s.close()
    c.close()


# ---- the malformed-input corpus --------------------------------------------------

GOOD_HEAD = (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Accept: application/json, text/event-stream\r\n")
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'

# (name, bytes, expected status, expected JSON-RPC code or None)
RAW_CASES = [
    ("huge header", b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 +
     b"\r\n\r\n", 431, None),
    ("too many headers", b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
     b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n", 431, None),
    ("bad content-length", GOOD_HEAD + b"Content-Length: abc\r\n\r\n", 400, None),
    ("negative content-length", GOOD_HEAD + b"Content-Length: -1\r\n\r\n", 400, None),
    ("conflicting content-length", GOOD_HEAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     400, None),
    ("content-length and chunked", GOOD_HEAD + b"Content-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400, None),
    ("chunked body", GOOD_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     411, None),
    ("oversized body", GOOD_HEAD + b"Content-Length: %d\r\n\r\n" % (MAX_MESSAGE + 1), 413, None),
    ("bare LF", b"POST /mcp HTTP/1.1\nHost: 127.0.0.1\n\n", 400, None),
    ("HTTP/2.0 version", b"POST /mcp HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505, None),
    ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, None),
    ("missing Host", b"POST /mcp HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400, None),
    ("foreign Host", b"POST /mcp HTTP/1.1\r\nHost: evil.example:3000\r\n"
     b"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n%s"
     % (len(PING), PING), 403, -32600),
    ("foreign Origin", GOOD_HEAD + b"Origin: http://evil.example\r\nContent-Length: %d\r\n\r\n%s"
     % (len(PING), PING), 403, -32600),
    ("wrong path", b"POST /other HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", 404,
     -32600),
    ("GET stream without session", b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     b"Accept: text/event-stream\r\n\r\n", 400, -32600),
    ("GET stream of unknown session", b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     b"Accept: text/event-stream\r\nMcp-Session-Id: " + b"e" * 32 + b"\r\n\r\n", 404, -32001),
    ("GET stream without SSE in Accept", b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     b"Accept: application/json\r\n\r\n", 406, -32600),
    ("PUT", b"PUT /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", 405, -32600),
    ("wrong content type", b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
     b"Accept: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(PING), PING), 415, -32600),
    ("Accept without json", b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     b"Content-Type: application/json\r\nAccept: text/html\r\nContent-Length: %d\r\n\r\n%s"
     % (len(PING), PING), 406, -32600),
    ("unsupported protocol version", GOOD_HEAD + b"MCP-Protocol-Version: 2023-01-01\r\n"
     b"Content-Length: %d\r\n\r\n%s" % (len(PING), PING), 400, -32600),
]


@pytest.mark.parametrize("name,data,status,code", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_malformed_http(rt, name, data, status, code):
    st, text = raw(rt, data)
    assert st == status, f"{name}: {text[:300]!r}"
    if code is not None:
        assert body_of(text)["error"]["code"] == code
    assert_serves(rt)


# (name, body bytes, session: "none"|"good"|"unknown"|"fresh", status, code)
BODY_CASES = [
    ("invalid JSON", b'{"jsonrpc":"2.0","id":1,', "good", 400, -32700),
    ("empty body", b"", "good", 400, -32700),
    ("invalid UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"p\xff\xfeing"}', "good", 400, -32700),
    ("duplicate keys", b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}', "good", 400, -32700),
    ("wrong jsonrpc version", b'{"jsonrpc":"1.0","id":1,"method":"ping"}', "good", 400, -32600),
    ("not an object", b'"ping"', "good", 400, -32600),
    ("batch", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', "good", 400, -32600),
    ("null id", b'{"jsonrpc":"2.0","id":null,"method":"ping"}', "good", 400, -32600),
    ("fractional id", b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', "good", 400, -32600),
    ("params not an object", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}', "good",
     400, -32600),
    ("unknown method", b'{"jsonrpc":"2.0","id":1,"method":"nope/nope"}', "good", 200, -32601),
    ("unknown tool", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}',
     "good", 200, -32602),
    ("tool args missing", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'
     b'{"name":"state_get","arguments":{"namespace":"a"}}}', "good", 200, -32602),
    ("tool args wrong type", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'
     b'{"name":"state_set","arguments":{"namespace":"a","key":"k","value":5}}}', "good", 200,
     -32602),
    ("tool args extra property", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'
     b'{"name":"runtime_status","arguments":{"x":1}}}', "good", 200, -32602),
    ("bad log level", b'{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":'
     b'{"level":"loud"}}', "good", 200, -32602),
    ("initialize without params", b'{"jsonrpc":"2.0","id":1,"method":"initialize"}', "none",
     200, -32602),
    ("re-initialize a session", b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":'
     b'{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}',
     "good", 200, None),   # initialize always makes a new session
    ("missing session", PING, "none", 400, -32600),
    ("unknown session", PING, "unknown", 404, -32001),
    ("request before initialized", b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', "fresh",
     400, -32600),
    ("notification", b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":'
     b'{"requestId":1}}', "good", 202, None),
    ("response from the client", b'{"jsonrpc":"2.0","id":1,"result":{}}', "good", 202, None),
]


@pytest.mark.parametrize("name,body,session,status,code", BODY_CASES,
                         ids=[c[0] for c in BODY_CASES])
def test_malformed_jsonrpc(rt, name, body, session, status, code):
    c = Client(rt.port)
    if session == "good":
        c.initialize()
        sid = c.sid
    elif session == "fresh":
        c.initialize(ready=False)
        sid = c.sid
    elif session == "unknown":
        sid = "0" * 32
    else:
        sid = False
    st, r, doc = c.post(body, sid=sid, raw=True)
    assert st == status, f"{name}: {doc}"
    if code is not None:
        assert doc["error"]["code"] == code and doc["error"]["message"], doc
    if status == 202:
        assert doc is None
    # the same connection and everybody else keep working
    if session in ("good", "fresh"):
        st, _, doc = c.request("ping")
        assert st == 200, doc
    assert_serves(rt)
    c.close()


def test_truncated_request_and_slow_client(rt):
    # a head cut short, then the client goes away
    raw(rt, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le", read=False)
    assert_serves(rt)
    # a body that never completes: 408 after request_timeout_ms
    t0 = time.monotonic()
    st, text = raw(rt, GOOD_HEAD + b"Content-Length: 100\r\n\r\n{\"jsonrpc\":", timeout=10)
    assert st == 408, text
    assert time.monotonic() - t0 >= REQUEST_TIMEOUT_MS / 1000 * 0.9
    # a head dripped one byte at a time, too slowly
    s = socket.create_connection(("127.0.0.1", rt.port), timeout=10 * SCALE)
    try:
        t0 = time.monotonic()
        got = b""
        for b in GOOD_HEAD:
            try:
                s.send(bytes([b]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - t0 > 3:
                break
        s.settimeout(3 * SCALE)
        try:
            got = s.recv(65536)
        except OSError:
            pass
        assert got.startswith(b"HTTP/1.1 408"), got
    finally:
        s.close()
    assert_serves(rt)


def test_connection_limit(rt):
    held = []
    try:
        for _ in range(MAX_CONN):
            s = socket.create_connection(("127.0.0.1", rt.port), timeout=5 * SCALE)
            held.append(s)
        time.sleep(0.3 * SCALE)    # let the server accept them all
        st, text = raw(rt, GOOD_HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(PING), PING))
        assert st == 503, text
        assert "Retry-After" in text
    finally:
        for s in held:
            s.close()
    end = time.monotonic() + 5 * SCALE
    while True:     # the closes are noticed asynchronously
        try:
            assert_serves(rt)
            break
        except (AssertionError, OSError, http.client.HTTPException):
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


# ---- crash: sessions live in the state manager ------------------------------------

def test_kill9_session_survives(rt):
    c = Client(rt.port)
    c.initialize()
    sid = c.sid
    c.call("state_set", {"namespace": "mcp.kill", "key": "k2", "value": "kept"})
    w = rt.worker("protocol")
    os.kill(w["pid"], signal.SIGKILL)
    rt.wait_for(lambda s: any(x["name"] == "protocol" and x["state"] == "running" and
                              x["generation"] > w["generation"] for x in s["workers"]),
                timeout=10 * SCALE, what="protocol worker restarted")
    c.close()
    wait_listening(rt.port)
    c = Client(rt.port)
    c.sid = sid
    st, _, doc = c.request("ping")
    assert st == 200, doc
    doc = c.call("state_get", {"namespace": "mcp.kill", "key": "k2"})
    assert doc["result"]["structuredContent"]["value"] == "kept"
    doc = c.call("state_set", {"namespace": "mcp.kill", "key": "k2", "value": "after"})
    assert doc["result"]["isError"] is False
    # an unknown session is still refused by the new worker
    st, _, doc = c.request("ping", sid="f" * 32)
    assert st == 404
    c.close()


def test_kill9_under_load(rt):
    """Clients keep writing while the worker is killed: no session is lost,
    no acknowledged write is lost, and every client carries on with its
    own Mcp-Session-Id once the worker is back."""
    import threading
    n_clients, stop = 4, threading.Event()
    acked = [0] * n_clients
    errors = []
    sids = []
    for _ in range(n_clients):
        c = Client(rt.port)
        c.initialize()
        sids.append(c.sid)
        c.close()

    def work(i):
        c = Client(rt.port)
        c.sid = sids[i]
        n = 0
        while not stop.is_set():
            n += 1
            try:
                doc = c.call("state_set", {"namespace": "mcp.load", "key": f"c{i}",
                                           "value": str(n)})
                assert doc["result"]["isError"] is False, doc
                acked[i] = n
            except (OSError, http.client.HTTPException):
                c.close()       # the worker died under us: reconnect, same session
                time.sleep(0.01)
                c = Client(rt.port)
                c.sid = sids[i]
            except AssertionError as e:
                errors.append(e)
                return
        c.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    time.sleep(0.5 * SCALE)
    w = rt.worker("protocol")
    before = list(acked)
    os.kill(w["pid"], signal.SIGKILL)
    rt.wait_for(lambda s: any(x["name"] == "protocol" and x["state"] == "running" and
                              x["generation"] > w["generation"] for x in s["workers"]),
                timeout=10 * SCALE, what="protocol worker restarted")
    end = time.monotonic() + 10 * SCALE
    while min(a - b for a, b in zip(acked, before)) < 20 and time.monotonic() < end:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert all(a - b >= 20 for a, b in zip(acked, before)), (before, acked)
    c = Client(rt.port)
    for i, sid in enumerate(sids):
        c.sid = sid
        doc = c.call("state_get", {"namespace": "mcp.load", "key": f"c{i}"})
        assert int(doc["result"]["structuredContent"]["value"]) >= acked[i]
    c.close()


# ---- the official TypeScript SDK client ----------------------------------------

SDK_CLIENT = r"""
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
(async () => {
  const c = new Client({ name: "mcpcore-test", version: "1.0.0" });
  const t = new StreamableHTTPClientTransport(new URL(process.argv[2]));
  await c.connect(t);
  const out = { session: t.sessionId, server: c.getServerVersion() };
  out.tools = (await c.listTools()).tools.map(x => x.name);
  out.set = await c.callTool({ name: "state_set", arguments: { namespace: "sdk", key: "a", value: "1" } });
  out.get = await c.callTool({ name: "state_get", arguments: { namespace: "sdk", key: "a" } });
  try { await c.callTool({ name: "state_get", arguments: { namespace: "sdk" } }); }
  catch (e) { out.bad_params = e.code; }
  await c.setLoggingLevel("debug");
  await c.ping();
  await t.terminateSession();
  await c.close();
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""


SDK_VERSION = "1.32.2"


def sdk_modules():
    """node_modules holding the SDK, installed with npm on first use."""
    prefix = os.environ.get("MC_MCP_NPM_PREFIX") or os.path.expanduser("~/.cache/mcpcore-npm")
    modules = os.path.join(prefix, "node_modules")
    pkg = os.path.join(modules, "@modelcontextprotocol", "sdk", "package.json")
    if os.path.exists(pkg) and json.load(open(pkg))["version"] == SDK_VERSION:
        return modules
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for the SDK client test")
    os.makedirs(prefix, exist_ok=True)
    r = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                        "--no-save", f"@modelcontextprotocol/sdk@{SDK_VERSION}"],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not os.path.exists(pkg):
        pytest.skip(f"npm install @modelcontextprotocol/sdk failed: {r.stderr[-500:]}")
    return modules


def test_official_sdk_client(rt, tmp_path):
    sdk = sdk_modules()
    script = tmp_path / "sdk_client.cjs"
    script.write_text(SDK_CLIENT)
    r = subprocess.run(["node", str(script), f"http://127.0.0.1:{rt.port}/mcp"],
                       capture_output=True, text=True, timeout=60 * SCALE,
                       env=dict(os.environ, NODE_PATH=sdk))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["session"]) == 32 and out["server"]["name"] == "mcpcore"
    assert "state_get" in out["tools"] and "runtime_status" in out["tools"]
    assert out["set"]["isError"] is False
    assert out["get"]["structuredContent"]["value"] == "1"
    assert out["bad_params"] == -32602
