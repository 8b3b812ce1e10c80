"""Frames survive a worker's crash: a frame queued to a worker before it is
killed is processed by its next incarnation, and a client keeps its slot and
rings across the restart.  (A frame the worker had taken but not finished is
redone too: tests/unit/test_frame.c kills a consumer at that point.)"""
import os
import signal
import time

import mcpcore
import pytest

from conftest import TEST_CONFIG  # noqa: F401  (the runtime fixture uses it)

WORKERS = ["state", "persistence", "monitor", "router", "protocol"]


def wait_worker(runtime, name, pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        w = runtime.worker(name)
        if pred(w):
            return w
        time.sleep(0.01)
    raise AssertionError(f"{name}: condition not met; status {runtime.worker(name)}")


@pytest.mark.parametrize("name", WORKERS)
def test_frame_queued_before_kill_is_processed_after_restart(runtime, seg, name):
    before = runtime.worker(name)
    tx = seg.open_ring(name, "producer")
    rx = seg.open_ring(name, "consumer")
    # freeze the worker so the frames wait in its ring, then queue pings
    os.kill(before["pid"], signal.SIGSTOP)
    nonces = list(range(1000, 1010))
    for n in nonces:
        tx.send(mcpcore.mcpcore_pb2.Control(op=mcpcore.mcpcore_pb2.Control.PING, nonce=n))
    assert tx.depth == len(nonces)
    os.kill(before["pid"], signal.SIGKILL)      # dies without having read any of them
    after = wait_worker(runtime, name, lambda w: w["state"] == "running" and
                        w["pid"] not in (0, before["pid"]))
    assert after["generation"] == before["generation"] + 1
    seen = {}
    deadline = time.monotonic() + 5
    while len(seen) < len(nonces) and time.monotonic() < deadline:
        msg = rx.recv(timeout=0.5)
        if isinstance(msg, mcpcore.mcpcore_pb2.Control) and msg.op == msg.PONG:
            seen[msg.nonce] = msg
    assert sorted(seen) == nonces, f"answered {sorted(seen)}"
    for pong in seen.values():
        assert pong.pid == after["pid"] and pong.generation == after["generation"]
    assert tx.depth == 0
