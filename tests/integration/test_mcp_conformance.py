"""The official MCP conformance suite (@modelcontextprotocol/conformance,
"server" scenarios) against a runtime with [protocol] conformance_fixtures
on, for spec versions 2025-06-18 and 2025-11-25 (issue 4), plus direct
checks of the server-to-client messages the fixtures produce (SSE bodies,
a sampling round trip through a second POST).

What the suite needs is installed by the test itself with npm into
MC_MCP_NPM_PREFIX/conformance (the build sets MC_MCP_NPM_PREFIX to
<build>/npm): the conformance package, and Node 22 from the npm registry
(package "node"), which conformance >= 0.1.14 needs whatever node is on
PATH (Debian's 18, this box's 20).  No ~/ caches are used (npm's cache
goes to the prefix too).  Under CI (MC_CI=1) a skip counts as a failure.
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from test_mcp import serving

SCALE = float(os.environ.get("MC_TIME_SCALE", "1"))
# 0.1.14 and later need Node 22 and are the first with --spec-version; Node 22
# comes from the npm registry (package "node") into the same prefix, so the
# test does not depend on the node on PATH (Debian's is 18, this box's 20).
CONFORMANCE_VERSION = "0.1.16"
NODE_VERSION = "22"
SPEC_VERSIONS = ["2025-06-18", "2025-11-25"]


def npm_prefix():
    base = os.environ.get("MC_MCP_NPM_PREFIX")
    if not base:
        pytest.skip("MC_MCP_NPM_PREFIX is not set (run through ctest)")
    return os.path.join(base, "conformance")


def node_major(node):
    try:
        r = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return 0
    m = re.match(r"v(\d+)", r.stdout.strip())
    return int(m.group(1)) if m else 0


def installed(mods, name, version):
    pkg = os.path.join(mods, *name.split("/"), "package.json")
    return os.path.exists(pkg) and json.load(open(pkg))["version"].startswith(version)


@pytest.fixture(scope="module")
def suite():
    """(node 22 binary, conformance entry point), installed on first use."""
    if not shutil.which("npm"):
        pytest.skip("npm is needed to install the conformance suite")
    prefix = npm_prefix()
    os.makedirs(prefix, exist_ok=True)
    mods = os.path.join(prefix, "node_modules")
    node = os.path.join(mods, ".bin", "node")
    if not (installed(mods, "@modelcontextprotocol/conformance", CONFORMANCE_VERSION) and
            installed(mods, "node", NODE_VERSION + ".") and node_major(node) >= 22):
        env = dict(os.environ, npm_config_cache=os.path.join(prefix, ".npm-cache"))
        r = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                            "--no-save", f"node@{NODE_VERSION}",
                            f"@modelcontextprotocol/conformance@{CONFORMANCE_VERSION}"],
                           capture_output=True, text=True, timeout=900, env=env)
        if r.returncode != 0:
            pytest.skip(f"npm install of node@{NODE_VERSION} and the conformance suite "
                        f"failed: {r.stderr[-500:]}")
    if node_major(node) < 22:
        pytest.skip(f"{node} is not Node >= 22")
    entry = os.path.join(mods, "@modelcontextprotocol", "conformance", "dist", "index.js")
    return node, entry


def server_scenarios(suite, spec):
    """Non-auth server scenarios that apply to spec (the list tags each
    with the versions it covers: "- name [2025-06-18,2025-11-25]")."""
    node, entry = suite
    r = subprocess.run([node, entry, "list", "--server"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = []
    for ln in r.stdout.splitlines():
        m = re.match(r"\s*- (\S+)(?: \[([^\]]*)\])?", ln)
        if m and not m.group(1).startswith("auth") and (not m.group(2) or spec in m.group(2)):
            out.append(m.group(1))
    return out


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("mcpconf"), {
        "protocol.conformance_fixtures": "true",
        "protocol.request_timeout_ms": "5000",
    }) as r:
        yield r


# ---- direct checks of the server-to-client messages --------------------------------

def post(port, body, sid=None, accept="application/json, text/event-stream"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SCALE)
    h = {"Content-Type": "application/json", "Accept": accept}
    if sid:
        h["Mcp-Session-Id"] = sid
    c.request("POST", "/mcp", body=json.dumps(body), headers=h)
    return c, c.getresponse()


def session(port, caps=None):
    if caps is None:
        caps = {"sampling": {}, "elicitation": {}}
    c, r = post(port, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": caps,
        "clientInfo": {"name": "pytest", "version": "1"}}})
    assert r.status == 200
    sid = r.getheader("Mcp-Session-Id")
    caps = json.loads(r.read())["result"]["capabilities"]
    c.close()
    assert caps["resources"]["subscribe"] is True and "prompts" in caps
    c, r = post(port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    assert r.status == 202
    c.close()
    return sid


def sse_events(text):
    return [json.loads(b.split("data: ", 1)[1]) for b in text.split("\n\n") if "data: " in b]


def test_logging_tool_answers_with_sse(rt):
    sid = session(rt.port)
    c, r = post(rt.port, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                          "params": {"name": "test_tool_with_logging", "arguments": {}}}, sid)
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    ev = sse_events(r.read().decode())
    c.close()
    assert [e.get("method") for e in ev] == ["notifications/message"] * 3 + [None]
    assert ev[-1]["id"] == 2 and ev[-1]["result"]["content"][0]["type"] == "text"
    # a client that takes only JSON gets the result alone
    c, r = post(rt.port, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "test_tool_with_logging"}}, sid,
                accept="application/json")
    assert r.getheader("Content-Type") == "application/json"
    assert json.loads(r.read())["id"] == 3
    c.close()


def test_sampling_round_trip(rt):
    sid = session(rt.port)
    c, r = post(rt.port, {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": "test_sampling", "arguments": {"prompt": "hi"}}}, sid)
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    buf = b""
    while b"\n\n" not in buf:
        buf += r.read1(4096)
    ask = sse_events(buf.decode())[0]
    assert ask["method"] == "sampling/createMessage"
    assert ask["params"]["messages"][0]["content"]["text"] == "hi"
    c2, r2 = post(rt.port, {"jsonrpc": "2.0", "id": ask["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "hello"}, "model": "m"}}, sid)
    assert r2.status == 202
    c2.close()
    rest = buf + r.read()          # the stream ends after the result
    done = sse_events(rest.decode())[-1]
    c.close()
    assert done["id"] == 7
    assert done["result"]["content"][0]["text"] == "LLM response: hello"


def test_no_request_the_client_did_not_declare(rt):
    sid = session(rt.port, caps={})
    for i, (name, args) in enumerate([("test_sampling", {"prompt": "x"}),
                                      ("test_elicitation", {"message": "x"})]):
        c, r = post(rt.port, {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                              "params": {"name": name, "arguments": args}}, sid)
        assert r.getheader("Content-Type") == "application/json"
        res = json.loads(r.read())["result"]
        c.close()
        assert res["isError"] is True and "does not support" in res["content"][0]["text"]


def test_fixtures_resources_and_prompts(rt):
    sid = session(rt.port)
    calls = [("resources/read", {"uri": "test://template/42/data"}),
             ("prompts/get", {"name": "test_prompt_with_arguments",
                              "arguments": {"arg1": "a", "arg2": "b"}}),
             ("resources/read", {"uri": "test://nope"})]
    out = []
    for i, (m, p) in enumerate(calls):
        c, r = post(rt.port, {"jsonrpc": "2.0", "id": i, "method": m, "params": p}, sid)
        out.append(json.loads(r.read()))
        c.close()
    assert '"id":"42"' in out[0]["result"]["contents"][0]["text"]
    assert "arg1='a'" in out[1]["result"]["messages"][0]["content"]["text"]
    assert out[2]["error"]["code"] == -32002


def test_subscription_updates_on_the_get_stream(rt):
    sid = session(rt.port)
    g = http.client.HTTPConnection("127.0.0.1", rt.port, timeout=10 * SCALE)
    g.request("GET", "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": sid})
    gr = g.getresponse()
    assert gr.status == 200 and gr.getheader("Content-Type") == "text/event-stream"
    uri = "test://watched-resource"
    for i, (m, code) in enumerate([("resources/subscribe", None),
                                   ("resources/unsubscribe", None),
                                   ("resources/subscribe", None)]):
        c, r = post(rt.port, {"jsonrpc": "2.0", "id": i, "method": m, "params": {"uri": uri}}, sid)
        assert json.loads(r.read())["result"] == {}
        c.close()
    c, r = post(rt.port, {"jsonrpc": "2.0", "id": 9, "method": "resources/subscribe",
                          "params": {"uri": "test://nope"}}, sid)
    assert json.loads(r.read())["error"]["code"] == -32002
    c.close()
    buf = b""
    while buf.count(b"\n\n") < 2:       # one update per subscribe
        buf += gr.read1(4096)
    ev = sse_events(buf.decode())
    g.close()
    assert [e["method"] for e in ev] == ["notifications/resources/updated"] * 2
    assert ev[0]["params"]["uri"] == uri


# ---- the suite -------------------------------------------------------------------

@pytest.mark.parametrize("spec", SPEC_VERSIONS)
def test_conformance_suite(rt, suite, spec, tmp_path):
    """Every non-auth server scenario of the version passes (the whole
    suite, pending scenarios included: --suite all)."""
    node, entry = suite
    scenarios = server_scenarios(suite, spec)
    assert "tools-call-sampling" in scenarios and "resources-read-text" in scenarios
    url = f"http://127.0.0.1:{rt.port}/mcp"
    start = time.monotonic()
    r = subprocess.run([node, entry, "server", "--url", url, "--spec-version", spec,
                        "--suite", "all"], capture_output=True, text=True,
                       timeout=150 * SCALE, cwd=tmp_path)
    out = r.stdout + r.stderr
    print(f"conformance {CONFORMANCE_VERSION}, {spec}: {time.monotonic() - start:.1f} s")
    summary = out[out.rfind("=== SUMMARY ==="):]
    print(summary)
    # a scenario with no check run (e.g. a fixture tool missing) passes
    # vacuously: require at least one passed check for each
    passed = {m[0] for m in re.findall(r"^\u2713 (\S+): (\d+) passed", summary, re.M)
              if int(m[1]) > 0}
    missing = [sc for sc in scenarios if sc not in passed]
    assert r.returncode == 0 and re.search(r"^Total: \d+ passed, 0 failed", summary, re.M), \
        out[-4000:]
    assert not missing, (missing, out[-4000:])
