-- mcp_state_get.lua - the wrk script of `mcpcore-bench mcp` (bench_mcp.c).
--
-- Every request is the same MCP POST: tools/call state_get of one key, on
-- a session the benchmark initialized, sent on wrk's keep-alive
-- connections.  nginx gets the very same bytes (it ignores the body).
--
-- Input, from the environment (read when wrk loads the script, in its
-- main state and in each thread's):
--   MC_BENCH_SESSION      Mcp-Session-Id of an initialized session
--   MC_BENCH_NS, MC_BENCH_KEY   what state_get reads
-- Requests go as fast as the server answers.  (The benchmark's latency
-- point is not wrk's: its delay() pacing ticks in whole milliseconds, so
-- it sends bursts; bench/bench_pace.c spaces requests evenly.)
--
-- Output: done() prints one line the benchmark parses,
--   MCBENCH requests=N duration_us=N bytes=N status_errors=N
--           socket_errors=N p50_us=N p90_us=N p99_us=N max_us=N

local sid = os.getenv("MC_BENCH_SESSION") or ""
local ns = os.getenv("MC_BENCH_NS") or "bench"
local key = os.getenv("MC_BENCH_KEY") or "k"

wrk.method = "POST"
wrk.path = "/mcp"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
wrk.headers["Mcp-Session-Id"] = sid
wrk.body = string.format('{"jsonrpc":"2.0","id":1,"method":"tools/call",' ..
    '"params":{"name":"state_get","arguments":{"namespace":"%s","key":"%s"}}}', ns, key)

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("MCBENCH requests=%d duration_us=%d bytes=%d status_errors=%d " ..
        "socket_errors=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
        summary.requests, summary.duration, summary.bytes, e.status,
        e.connect + e.read + e.write + e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
