"""The persistence worker as an operator sees it: nothing acknowledged is lost
or stored twice across kill -9 of the worker and of the whole process tree,
a full disk is back-pressure and not loss, the store stays readable by
Debian's `ldb`, and `mcpcore checkpoint / restore / dump / status` work.

Producers are tests/integration/persist_load.c (PERSIST_LOAD): it pushes
MCPMessage frames from a client slot and records which sequence numbers the
control block acknowledged; its `verify` mode reads the store back.  Its
messages carry timestamp 0, so the worker keys them by the time it takes
them: a frame stored twice would show up as two keys.

Every test runs its own `mcpcore run` on config/test.toml with rocksdb_path
in the test's tmp dir."""
import base64
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import MCPCORE, Runtime, mcpcore, unique, write_config

PERSIST_LOAD = os.environ.get("PERSIST_LOAD", "build/bin/persist_load")
LDB = shutil.which("ldb")


def persist_config(tmp_path, db=None, **extra):
    over = {
        "persistence.rocksdb_path": json.dumps(str(db or tmp_path / "db")),
        # the kill tests crash the worker on purpose, faster than the default policy allows
        "supervisor.crash_loop_restarts": "1000",
        "supervisor.restart_backoff_ms": "50",
        "supervisor.restart_backoff_max_ms": "200",
    }
    over.update({k.replace("__", "."): v for k, v in extra.items()})
    return write_config(tmp_path, over)


def persistence(rt):
    st = rt.status()
    return st and st.get("persistence")


def wait_persistence(rt, pred, timeout=30.0, what="persistence condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = persistence(rt)
        if last is not None and pred(last):
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; persistence={last}\n{rt.read_log()[-4000:]}")


def push(rt, tmp_path, count, *args, name="load"):
    """Start the load helper in the background; returns (Popen, progress path)."""
    progress = tmp_path / f"{name}.progress"
    proc = subprocess.Popen([PERSIST_LOAD, "push", "--instance", rt.instance, "--count",
                             str(count), "--progress", str(progress), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, progress


def progress_of(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"persist_load failed ({proc.returncode}): {err}"
    return json.loads(out.strip().splitlines()[-1])


def verify(db, summary, acked=None):
    r = subprocess.run([PERSIST_LOAD, "verify", "--db", str(db), "--run", str(summary["run"]),
                        "--slot", str(summary["slot"]), "--first", str(summary["first_seq"]),
                        "--last", str(summary["last_seq"]), "--acked",
                        str(summary["acked_seq"] if acked is None else acked)],
                       capture_output=True, text=True, timeout=300)
    doc = json.loads(r.stdout) if r.stdout.strip() else {}
    return r.returncode, doc


def ldb_keys(db, cf="messages"):
    """Every key of a family, as `ldb` lists it (the command in the README)."""
    r = subprocess.run([LDB, f"--db={db}", f"--column_family={cf}", "scan", "--key_hex",
                        "--no_value"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [bytes.fromhex(l.strip()[2:]) for l in r.stdout.splitlines() if l.startswith("0x")]


@pytest.fixture
def rtp(tmp_path, runtime):
    """A runtime on a persist_config; returns (runtime, db path)."""
    def make(**extra):
        db = tmp_path / "db"
        rt = runtime(config=persist_config(tmp_path, db, **extra))
        wait_persistence(rt, lambda p: p["state"] == "running", what="store open")
        return rt, db
    return make


# ---------------------------------------------------------------------------
# kill -9


N_KILL = int(os.environ.get("MC_PERSIST_KILL_FRAMES", "1000000"))


@pytest.mark.skipif(LDB is None, reason="ldb (rocksdb-tools) not installed")
def test_kill9_worker_million_frames_exactly_once(tmp_path, rtp):
    rt, db = rtp()
    proc, progress = push(rt, tmp_path, N_KILL, "--wait-s", "240")
    kills, pids = 0, set()
    # kill whenever another sixth of the stream is acknowledged: mid-stream,
    # with batches in flight; at least 5 kills (6 planned)
    for k in range(1, 7):
        target = N_KILL * k // 7
        end = time.monotonic() + 120
        while time.monotonic() < end:
            p = progress_of(progress)
            if p and p["acked_seq"] - p["first_seq"] >= target:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        if proc.poll() is not None:
            break
        w = rt.wait_for(lambda st: next(x for x in st["workers"] if x["name"] == "persistence")
                        ["state"] == "running", 30, "persistence running")
        pid = next(x for x in w["workers"] if x["name"] == "persistence")["pid"]
        assert pid not in pids
        pids.add(pid)
        os.kill(pid, signal.SIGKILL)
        kills += 1
    summary = finish(proc)
    assert kills >= 5, f"only {kills} kills landed before the stream ended: {summary}"
    assert summary["sent"] == N_KILL
    assert summary["acked_seq"] == summary["last_seq"], summary
    # the last kill may have landed after the final acknowledgement: wait for
    # its restart (backoff, and a slower start under sanitizers)
    rt.wait_for(lambda st: next(x for x in st["workers"] if x["name"] == "persistence")
                ["restarts"] >= kills, 30, f"{kills} restarts of persistence")
    p = persistence(rt)
    assert p["records"] > 0 and p["fault"] is None     # counters are best-effort across kill -9
    assert rt.stop() == 0
    rc, doc = verify(db, summary)
    assert rc == 0, doc
    assert doc["matching"] == N_KILL and doc["duplicates"] == 0 and doc["missing"] == 0, doc
    # Debian's ldb sees the same set: every acknowledged (run, slot, seq), once
    keys = ldb_keys(db)
    ids = {(k[8:16], k[16], int.from_bytes(k[17:25], "big")) for k in keys}
    assert len(keys) == len(ids) == N_KILL
    run = summary["run"].to_bytes(8, "big")
    assert ids == {(run, summary["slot"], s)
                   for s in range(summary["first_seq"], summary["last_seq"] + 1)}


def test_kill9_whole_tree_then_restart(tmp_path):
    cfg = persist_config(tmp_path)
    db = tmp_path / "db"
    instance = unique("pk")
    rt = Runtime(tmp_path, config=cfg, instance=instance)
    rt.log = open(rt.log_path, "w")
    rt.proc = subprocess.Popen([MCPCORE, "run", "--config", cfg, "--instance", instance],
                               stdout=rt.log, stderr=subprocess.STDOUT, start_new_session=True)
    rt2 = None
    try:
        rt.wait_ready()
        wait_persistence(rt, lambda p: p["state"] == "running")
        # state through the real state worker, when it has its CLI and feed
        keys = {}
        has_state = mcpcore("state", "--help").returncode == 0
        if has_state:
            for i in range(50):
                r = mcpcore("state", "put", "restore-ns", f"k{i}", f"v{i}", "--instance", instance)
                assert r.returncode == 0, r.stderr
                keys[f"k{i}"] = f"v{i}"
            for i in range(0, 50, 10):
                assert mcpcore("state", "del", "restore-ns", f"k{i}",
                               "--instance", instance).returncode == 0
                del keys[f"k{i}"]
        n = N_KILL * 2 // 5
        proc, progress = push(rt, tmp_path, n, "--wait-s", "60")
        end = time.monotonic() + 120
        while time.monotonic() < end:
            p = progress_of(progress)
            if p and p["acked_seq"] - p["first_seq"] > n // 4:
                break
            time.sleep(0.005)
        # the whole tree: supervisor and every worker, at once
        os.killpg(rt.proc.pid, signal.SIGKILL)
        rt.proc.wait()
        summary = finish(proc, timeout=120)
        assert summary["acked_seq"] >= summary["first_seq"] + n // 4, summary
        # a fresh `mcpcore run` sweeps the stale segment and restores the state
        rt2 = Runtime(tmp_path, config=cfg, instance=instance).start()
        rt2.wait_ready(timeout=60)
        p = wait_persistence(rt2, lambda p: p["state"] == "running" and p["restored"])
        state_ok = True
        for k, v in keys.items():
            r = mcpcore("state", "get", "restore-ns", k, "--instance", instance)
            state_ok &= r.returncode == 0 and r.stdout.strip() == v
        for i in range(0, 50, 10):
            r = mcpcore("state", "get", "restore-ns", f"k{i}", "--instance", instance)
            state_ok &= r.returncode != 0
        assert rt2.stop() == 0
        rc, doc = verify(db, summary)
        assert rc == 0, doc
        assert doc["duplicates"] == 0 and doc["missing_acked"] == 0, doc
        assert doc["matching"] >= summary["acked_seq"] - summary["first_seq"] + 1
        if not has_state:
            pytest.xfail("the state worker has no `mcpcore state` CLI yet: data checked, "
                         "state restore not exercised")
        assert state_ok, f"state not restored: {p}\n{rt2.read_log()[-3000:]}"
        assert p["restored_keys"] >= len(keys)
    finally:
        for r in (rt, rt2):
            if r is not None and r.proc is not None and r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()
        if os.path.exists(f"/dev/shm/mcpcore.{instance}"):
            os.unlink(f"/dev/shm/mcpcore.{instance}")


# ---------------------------------------------------------------------------
# faults


def _sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None
                    or shutil.which("nsenter") is None,
                    reason="needs root, unshare and nsenter to mount a private tmpfs")
def test_enospc_is_backpressure_and_resumes(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    copy = tmp_path / "db-copy"
    cfg = persist_config(tmp_path, mnt / "db")
    instance = unique("pnospc")
    log = open(tmp_path / "run.log", "w")
    # a private mount namespace: the 24 MiB tmpfs vanishes with the runtime;
    # 18 MiB of filler leave ~6 MiB for the store, less than the load needs
    script = f"""
set -e
mount -t tmpfs -o size=24m tmpfs {mnt}
dd if=/dev/zero of={mnt}/filler bs=1M count=18 status=none
set +e
{MCPCORE} run --config {cfg} --instance {instance}
rc=$?
cp -a {mnt}/db {copy}
exit $rc
"""
    # its own process group, so a failed test can take the runtime down with it
    ns = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rt = Runtime(tmp_path, config=cfg, instance=instance)
    rt.proc = ns
    rt.log_path = tmp_path / "run.log"
    proc = None
    try:
        rt.wait_ready(timeout=30)
        sup = rt.status()["supervisor"]["pid"]
        wait_persistence(rt, lambda p: p["state"] == "running")
        n = 30000
        proc, progress = push(rt, tmp_path, n, "--wait-s", "120")
        p = wait_persistence(rt, lambda p: p["fault"] is not None, 60, "ENOSPC fault")
        assert p["fault"]["error"] == "ENOSPC", p
        assert "No space left" in p["fault"]["message"]
        assert p["state"] == "fault"
        # back-pressure: the producer is refused and nothing more is
        # acknowledged.  RocksDB may free a little space (obsolete files) and
        # let a retry through right after the first fault, so look for a
        # settled second in which the fault holds and nothing moves.
        deadline = time.monotonic() + 30
        while True:
            a = progress_of(progress)
            time.sleep(1.0)
            b = progress_of(progress)
            if persistence(rt)["fault"] is not None and b["acked_seq"] == a["acked_seq"]:
                break
            assert time.monotonic() < deadline, ("never settled into back-pressure", a, b)
        assert b["eagain"] > a["eagain"], (a, b)
        assert b["acked_seq"] < b["first_seq"] + n - 1
        assert proc.poll() is None
        assert "store_fault" in rt.read_log()
        # the operator frees space: the worker resumes by itself
        r = _sh(["nsenter", "--target", str(sup), "--mount", "rm", "-f", str(mnt / "filler")])
        assert r.returncode == 0, r.stderr
        summary = finish(proc, timeout=180)
        assert summary["acked_seq"] == summary["last_seq"], summary
        p = wait_persistence(rt, lambda p: p["fault"] is None and p["state"] == "running")
        assert p["faults_total"] >= 1
        assert "store_recovered" in rt.read_log()
        os.kill(sup, signal.SIGTERM)
        assert ns.wait(30) == 0
        rc, doc = verify(copy, summary)
        assert rc == 0, doc
        assert doc["matching"] == n and doc["duplicates"] == 0 and doc["missing"] == 0, doc
    finally:
        if ns.poll() is None:
            os.killpg(ns.pid, signal.SIGKILL)
            ns.wait()
        if proc is not None and proc.poll() is None:
            proc.kill()         # the load helper of a failed test
            proc.wait()
        log.close()
        if os.path.exists(f"/dev/shm/mcpcore.{instance}"):
            os.unlink(f"/dev/shm/mcpcore.{instance}")


def test_corrupt_store_at_start_is_a_fault_then_recovers(tmp_path, runtime):
    db = tmp_path / "db"
    cfg = persist_config(tmp_path, db)
    rt = runtime(config=cfg)
    wait_persistence(rt, lambda p: p["state"] == "running")
    assert rt.stop() == 0
    current = (db / "CURRENT").read_bytes()
    (db / "CURRENT").write_bytes(b"garbage-without-newline")
    rt = runtime(config=cfg)          # the worker still reports ready, in a fault
    p = wait_persistence(rt, lambda p: p["fault"] is not None, what="corruption fault")
    assert p["fault"]["error"] == "CORRUPTION", p
    assert rt.worker("persistence")["state"] == "running"
    text = mcpcore("status", "--instance", rt.instance)
    assert "FAULT CORRUPTION" in text.stdout, text.stdout
    proc, progress = push(rt, tmp_path, 2000, "--wait-s", "60")
    time.sleep(0.5)
    assert progress_of(progress)["acked_seq"] == 0
    (db / "CURRENT").write_bytes(current)           # the operator repairs it
    summary = finish(proc, timeout=90)
    assert summary["acked_seq"] == summary["last_seq"]
    p = wait_persistence(rt, lambda p: p["fault"] is None)
    assert rt.stop() == 0
    rc, doc = verify(db, summary)
    assert rc == 0 and doc["matching"] == 2000, doc


def test_store_locked_by_another_instance(tmp_path, runtime):
    db = tmp_path / "db"
    cfg = persist_config(tmp_path, db)
    a = runtime(config=cfg)
    wait_persistence(a, lambda p: p["state"] == "running")
    b = runtime(config=cfg)
    p = wait_persistence(b, lambda p: p["fault"] is not None, what="lock fault")
    assert p["fault"]["error"] == "LOCKED", p
    assert a.stop() == 0
    wait_persistence(b, lambda p: p["state"] == "running" and p["fault"] is None,
                     what="second instance takes over")


def test_vanished_directory_is_a_fault_not_a_new_store(tmp_path, rtp):
    rt, db = rtp()
    proc, progress = push(rt, tmp_path, 100, "--wait-s", "10")
    summary = finish(proc)
    assert summary["acked_seq"] == summary["last_seq"]
    shutil.rmtree(db)
    proc, progress = push(rt, tmp_path, 100, "--wait-s", "2", name="after")
    after = finish(proc)
    assert after["acked_seq"] < after["first_seq"], after      # nothing acknowledged
    p = wait_persistence(rt, lambda p: p["fault"] is not None)
    assert p["fault"]["error"] == "ENOENT", p
    assert not db.exists()          # never silently recreated


# ---------------------------------------------------------------------------
# reading back, checkpoints


@pytest.mark.skipif(LDB is None, reason="ldb (rocksdb-tools) not installed")
def test_ldb_reads_what_dump_prints(tmp_path, rtp):
    rt, db = rtp()
    summary = finish(push(rt, tmp_path, 300, "--stamp")[0])
    assert summary["acked_seq"] == summary["last_seq"]
    dumped = [json.loads(l) for l in mcpcore("dump", "--config", rt.config, "--cf",
                                             "messages").stdout.splitlines()]
    assert rt.stop() == 0
    # the command documented in the README
    r = subprocess.run([LDB, f"--db={db}", "--column_family=messages", "scan", "--key_hex",
                        "--value_hex"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [l.split(" : ") for l in r.stdout.splitlines() if " : " in l]
    assert len(rows) == len(dumped) == 300
    for (khex, vhex), rec in zip(rows, dumped):
        key = bytes.fromhex(khex[2:])
        value = bytes.fromhex(vhex[2:])
        k = rec["key"]
        assert int.from_bytes(key[0:8], "big") == k["time"]
        assert int.from_bytes(key[8:16], "big") == k["run"]
        assert key[16] == k["slot"] and int.from_bytes(key[17:25], "big") == k["seq"]
        assert rec["value"]["message_type"] == "load"
        assert base64.b64decode(rec["value"]["payload"]) in value
        assert rec["value"]["timestamp"] == k["time"]      # --stamp: the key is the message time
    # --since and --limit
    t = dumped[100]["key"]["time"]
    since = mcpcore("dump", "--db", str(db), "--cf", "messages", "--since", str(t), "--limit", "5")
    lines = [json.loads(l) for l in since.stdout.splitlines()]
    assert [l["key"]["seq"] for l in lines] == [d["key"]["seq"] for d in dumped[100:105]]


def test_checkpoint_and_offline_restore(tmp_path, rtp):
    rt, db = rtp(persistence__checkpoint_keep="2")
    s1 = finish(push(rt, tmp_path, 1000, "--stamp", name="one")[0])
    r = mcpcore("checkpoint", "--instance", rt.instance)
    assert r.returncode == 0, r.stderr
    ckpt = r.stdout.strip()
    assert os.path.dirname(ckpt) == str(tmp_path / "checkpoints")
    assert os.path.isfile(os.path.join(ckpt, "CURRENT"))
    s2 = finish(push(rt, tmp_path, 500, "--stamp", name="two")[0])
    # keep = 2: a third checkpoint removes the first
    c2 = json.loads(mcpcore("checkpoint", "--instance", rt.instance, "--json").stdout)["path"]
    c3 = mcpcore("checkpoint", "--instance", rt.instance).stdout.strip()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == sorted(
        [os.path.basename(c2), os.path.basename(c3)])
    assert persistence(rt)["checkpoints"] == 3
    # the first is gone: restore the second, which has all 1500
    r = mcpcore("restore", c2, "--config", rt.config, "--instance", rt.instance)
    assert r.returncode == 1 and "is running" in r.stderr      # never under a live runtime
    r = mcpcore("restore", c2, "--config", rt.config)          # another instance name: the lock
    assert r.returncode == 1 and "RocksDB lock held" in r.stderr
    assert rt.stop() == 0
    r = mcpcore("restore", os.path.basename(c2), "--config", rt.config)
    assert r.returncode == 0, r.stderr
    aside = [d for d in os.listdir(tmp_path) if d.startswith("db.before-restore-")]
    assert len(aside) == 1
    n = len(mcpcore("dump", "--config", rt.config, "--cf", "messages").stdout.splitlines())
    assert n == 1500
    rc, doc = verify(db, s1)
    assert rc == 0 and doc["matching"] == 1000, doc
    rc, doc = verify(db, s2)
    assert rc == 0 and doc["matching"] == 500, doc
    # the restored store runs
    rt2 = Runtime(tmp_path, config=rt.config, instance=unique("pr")).start()
    try:
        rt2.wait_ready()
        wait_persistence(rt2, lambda p: p["state"] == "running")
    finally:
        rt2.stop()


def test_periodic_checkpoints(tmp_path, rtp):
    rt, db = rtp(persistence__checkpoint_interval="1", persistence__checkpoint_keep="2")
    p = wait_persistence(rt, lambda p: p["checkpoints"] >= 3, 20, "three checkpoints")
    assert p["last_checkpoint"].startswith(str(tmp_path / "checkpoints"))
    time.sleep(0.3)
    assert len(os.listdir(tmp_path / "checkpoints")) <= 2


def test_status_sync_none_and_help(tmp_path, rtp):
    rt, db = rtp(persistence__sync='"none"', persistence__compression='"zstd"')
    summary = finish(push(rt, tmp_path, 5000)[0])
    assert summary["acked_seq"] == summary["last_seq"]
    p = persistence(rt)
    assert p["sync"] == "none" and p["path"] == str(db)
    assert p["durable"][f"client{summary['slot'] - 6}"] == summary["last_seq"]
    assert p["memory"]["source"] in ("jemalloc", "proc") and p["memory"]["resident"] > 0
    text = mcpcore("status", "--instance", rt.instance).stdout
    assert "persistence running" in text
    for cmd in ("checkpoint", "restore", "dump"):
        r = mcpcore(cmd, "--help")
        assert r.returncode == 0 and f"usage: mcpcore {cmd}" in r.stdout
    assert "checkpoint" in mcpcore("--help").stdout
    r = mcpcore("dump", "--config", rt.config)
    assert r.returncode == 64
