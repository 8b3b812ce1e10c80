"""The runtime as an operator sees it: `mcpcore run`, `layout`, `status`,
`ping`; worker crashes and restarts; shutdown; stale segments; bad configs.

Each test starts its own `mcpcore run` (config/test.toml unless it needs
another) under a unique instance name."""
import glob
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import (MCPCORE, SOURCE, TEST_CONFIG, WORKERS, Runtime, mcpcore,
                      pid_alive, unique, write_config)

DEFAULT_CONFIG = os.path.join(SOURCE, "config", "mcpcore.toml")
TIME_SCALE = float(os.environ.get("MC_TIME_SCALE", "1"))
REGIONS = [
    ("shared.rings", 1 << 30), ("shared.state_cache", 2 << 30),
    ("shared.message_queue", 1 << 30), ("core.protocol", 1 << 30),
    ("core.state", 1 << 30), ("core.routing", 1 << 30),
    ("learning.models", 3 << 29), ("learning.training", 1 << 30),
    ("learning.features", 1 << 29), ("storage.active_models", 1 << 30),
    ("storage.history", 1 << 30),
]


def shm_files(instance="*"):
    """Segments of `instance` (other test programs may run in parallel:
    look only at names this test could have created)."""
    return set(glob.glob("/dev/shm/mcpcore." + instance))


def test_layout_default_config_creates_nothing():
    before = shm_files("default")
    r = mcpcore("layout", "--config", DEFAULT_CONFIG, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [(g["name"], g["size"]) for g in doc["regions"]] == REGIONS
    assert doc["total"] == 12 << 30
    offset = 0
    for g in doc["regions"]:
        assert g["offset"] == offset
        offset += g["size"]
    assert shm_files("default") == before
    text = mcpcore("layout", "--config", DEFAULT_CONFIG)
    assert text.returncode == 0
    for name, _ in REGIONS:
        assert name in text.stdout
    assert "12 GiB" in text.stdout


def test_help_for_every_command():
    for cmd in ["run", "layout", "status", "ping"]:
        r = mcpcore(cmd, "--help")
        assert r.returncode == 0 and f"usage: mcpcore {cmd}" in r.stdout
    assert mcpcore("--help").returncode == 0
    r = mcpcore("frobnicate")
    assert r.returncode == 64 and "unknown command" in r.stderr


BAD = sorted(glob.glob(os.path.join(SOURCE, "tests", "config", "bad", "*.toml")))


@pytest.mark.parametrize("path", BAD, ids=os.path.basename)
def test_bad_config_is_one_line_and_exit_78(path):
    expect = re.match(rb"# expect: (\d+): (\S+)", open(path, "rb").readline())
    assert expect, f"{path} lacks its '# expect:' line"
    line, key = expect.group(1).decode(), expect.group(2).decode()
    name = unique("bad")
    for cmd in (["run", "--instance", name], ["layout"]):
        r = subprocess.run([MCPCORE, *cmd, "--config", path], capture_output=True, timeout=10)
        assert r.returncode == 78, (cmd, r.stderr)
        err = r.stderr.decode("utf-8", "replace")
        assert err.count("\n") == 1, err
        assert f"{path}:{line}: {key}:" in err, err
    assert not shm_files(name)


def test_at_least_ten_bad_configs():
    assert len(BAD) >= 10


def test_missing_unreadable_and_directory_configs(tmp_path):
    r = mcpcore("run", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 78 and "nope.toml:0: -:" in r.stderr
    r = mcpcore("run", "--config", str(tmp_path))
    assert r.returncode == 78 and str(tmp_path) in r.stderr
    secret = tmp_path / "secret.toml"
    secret.write_text(open(TEST_CONFIG).read())
    os.chmod(secret, 0)
    os.chmod(tmp_path, 0o755)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        MCPCORE, "layout", "--config", str(secret)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 78 and "secret.toml:0: -:" in r.stderr, r.stderr


def test_run_status_ping_and_clean_sigterm(runtime):
    t0 = time.monotonic()
    rt = runtime(wait=False)
    st = rt.wait_ready()
    ready_s = time.monotonic() - t0
    assert ready_s < 5, f"ready after {ready_s:.2f}s"
    assert st["supervisor"]["pid"] == rt.proc.pid and st["supervisor"]["alive"]
    assert [w["name"] for w in st["workers"]] == WORKERS
    for w in st["workers"]:
        assert w["state"] == "running" and w["restarts"] == 0 and pid_alive(w["pid"])
        assert 0 <= w["heartbeat_age_ms"] < 1000
    assert os.stat(rt.shm_path).st_mode & 0o777 == 0o600
    human = mcpcore("status", "--instance", rt.instance)
    assert human.returncode == 0 and "router" in human.stdout and "running" in human.stdout

    ping = mcpcore("ping", "--instance", rt.instance, "--json", "--count", "3")
    assert ping.returncode == 0, ping.stderr
    results = json.loads(ping.stdout)["results"]
    assert len(results) == 15
    pids = {w["name"]: w["pid"] for w in st["workers"]}
    for res in results:
        assert res["pid"] == pids[res["worker"]] and res["generation"] == 1

    t0 = time.monotonic()
    assert rt.stop() == 0
    assert time.monotonic() - t0 < 5
    assert not os.path.exists(rt.shm_path)
    for pid in pids.values():
        assert not pid_alive(pid)
    order = [e["worker"] for e in rt.events("worker_stopped")]
    assert order == list(reversed(WORKERS)), order
    assert rt.events("supervisor_stopped")


def test_every_lifecycle_log_line_is_json(runtime):
    rt = runtime()
    os.kill(rt.worker("monitor")["pid"], signal.SIGKILL)
    rt.wait_for(lambda st: st["workers"][2]["restarts"] == 1 and
                st["workers"][2]["state"] == "running")
    rt.stop()
    lines = rt.read_log().splitlines()
    assert lines
    for line in lines:
        ev = json.loads(line)
        for field in ("time", "level", "component", "pid", "event"):
            assert field in ev, line
    events = {e["event"] for e in rt.events()}
    assert {"segment_created", "worker_started", "worker_running", "runtime_ready",
            "worker_exited", "shutdown_requested", "worker_stopped",
            "supervisor_stopped"} <= events


def test_kill_each_worker_comes_back_within_a_second(runtime):
    rt = runtime()
    for i, name in enumerate(WORKERS):
        before = rt.worker(name)
        os.kill(before["pid"], signal.SIGKILL)
        t0 = time.monotonic()
        after = rt.wait_for(
            lambda st: st["workers"][i]["state"] == "running" and
            st["workers"][i]["pid"] not in (0, before["pid"]), 5, f"{name} back")
        back_s = time.monotonic() - t0
        assert back_s < 1.0 * TIME_SCALE, f"{name} back after {back_s:.2f}s"
        w = after["workers"][i]
        assert w["restarts"] == before["restarts"] + 1
        assert w["generation"] == before["generation"] + 1
        ping = mcpcore("ping", name, "--instance", rt.instance, "--json")
        assert ping.returncode == 0, ping.stderr
        assert json.loads(ping.stdout)["results"][0]["pid"] == w["pid"]
    # the others were never disturbed by each kill
    assert all(w["restarts"] == 1 for w in rt.status()["workers"])


def sched_of(path):
    """(policy, nice) of a process or thread, from its /proc stat file."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[38]), int(fields[16])     # stat fields 41 and 19


def test_workers_scheduling_classes(runtime):
    """The workers a request waits for run as normal tasks; the store and
    the monitor as SCHED_BATCH at nice 10; RocksDB's flush and compaction
    threads as SCHED_IDLE (workers/worker.c, workers/persistence/store.c)."""
    normal, batch, idle = 0, 3, 5
    rt = runtime()
    for name in WORKERS:
        want = (batch, 10) if name in ("persistence", "monitor") else (normal, 0)
        pid = rt.worker(name)["pid"]
        assert sched_of(f"/proc/{pid}/stat") == want, name
    pid = rt.worker("persistence")["pid"]
    deadline = time.monotonic() + 5 * TIME_SCALE
    while True:     # the store opens in a thread of its own, after ready
        pools = []
        for task in glob.glob(f"/proc/{pid}/task/*"):
            with open(task + "/comm") as f:
                if f.read().startswith("rocksdb:"):
                    pools.append(sched_of(task + "/stat")[0])
        if len(pools) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(pools) >= 2 and set(pools) == {idle}, pools


def test_crash_loop_ends_failed_without_spinning(runtime, tmp_path):
    rt = runtime(env={"MCPCORE_TEST_CRASH": "router"}, wait=False)
    st = rt.wait_for(lambda st: st["workers"][3]["state"] == "failed", 20, "router failed")
    router = st["workers"][3]
    assert router["pid"] == 0
    assert router["restarts"] == 4          # 5 crashes within the window: 4 restarts
    # the others keep running
    rt.wait_for(lambda st: all(w["state"] == "running" for w in st["workers"]
                               if w["name"] != "router"), 5, "others running")
    failed = rt.events("worker_failed")
    assert len(failed) == 1 and failed[0]["worker"] == "router"
    # no busy loop: the supervisor used little CPU, and nothing more happens
    time.sleep(1.0)
    with open(f"/proc/{rt.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    assert cpu_s < 1.0, f"supervisor used {cpu_s:.2f}s of CPU"
    assert rt.worker("router")["restarts"] == 4
    ping = mcpcore("ping", "router", "--instance", rt.instance)
    assert ping.returncode == 1 and "Broken pipe" in ping.stdout
    assert rt.stop() == 0


def test_hung_worker_is_killed_and_restarted(runtime, tmp_path):
    # sanitizer builds start workers slower: a tight timeout there would
    # also catch workers that are merely slow to send their first heartbeat
    cfg = write_config(tmp_path, {"supervisor.heartbeat_timeout_ms": str(int(500 * TIME_SCALE))})
    rt = runtime(config=cfg)
    victim = rt.worker("persistence")
    os.kill(victim["pid"], signal.SIGSTOP)
    st = rt.wait_for(lambda st: st["workers"][1]["restarts"] == victim["restarts"] + 1 and
                     st["workers"][1]["state"] == "running", 10, "hung worker replaced")
    assert st["workers"][1]["pid"] != victim["pid"]
    hung = rt.events("worker_hung")
    assert any(h["worker"] == "persistence" for h in hung), hung


def test_second_run_refuses_clearly(runtime):
    rt = runtime()
    r = subprocess.run([MCPCORE, "run", "--config", TEST_CONFIG, "--instance", rt.instance],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "already running" in r.stderr and str(rt.proc.pid) in r.stderr
    # the live instance is untouched
    st = rt.status()
    assert all(w["state"] == "running" for w in st["workers"])


def test_supervisor_kill9_takes_workers_and_restart_sweeps(runtime, tmp_path):
    rt = runtime()
    pids = [w["pid"] for w in rt.status()["workers"]]
    rt.proc.kill()
    rt.proc.wait()
    t0 = time.monotonic()
    while any(pid_alive(p) for p in pids) and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    gone_s = time.monotonic() - t0
    assert not any(pid_alive(p) for p in pids)
    assert gone_s < 1.0, f"workers outlived the supervisor by {gone_s:.2f}s"
    assert os.path.exists(rt.shm_path)      # left behind: the next start must cope
    assert mcpcore("status", "--instance", rt.instance, "--json").returncode == 0

    again = Runtime(tmp_path, instance=rt.instance).start()
    try:
        # the stale segment still says "running": wait for the new supervisor's
        again.wait_for(lambda st: st["supervisor"]["pid"] == again.proc.pid and
                       all(w["state"] == "running" for w in st["workers"]), 10 * TIME_SCALE,
                       "the new supervisor ready")
        swept = again.events("stale_segment_swept")
        assert swept and swept[0]["dead_supervisor_pid"] == rt.proc.pid
        assert again.status()["supervisor"]["pid"] == again.proc.pid
        assert again.stop() == 0
        assert not os.path.exists(rt.shm_path)
    finally:
        again.kill()


def test_status_of_absent_instance():
    name = unique("absent")
    r = mcpcore("status", "--instance", name)
    assert r.returncode == 1 and name in r.stderr and "not running" in r.stderr


def test_small_dev_shm_is_refused_with_advice(tmp_path):
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("needs root and mount namespaces")
    name = unique("small")
    script = (f"mount -t tmpfs -o size=64m tmpfs /dev/shm && "
              f"exec {MCPCORE} run --config {DEFAULT_CONFIG} --instance {name}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1, r.stderr
    assert "/dev/shm has" in r.stderr and "--shm-size" in r.stderr


def meminfo_shmem_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    raise AssertionError("no Shmem in /proc/meminfo")


def test_default_config_segment_is_12gib_and_sparse(runtime):
    st = os.statvfs("/dev/shm")
    if st.f_bavail * st.f_frsize < 12 << 30:
        pytest.skip("/dev/shm smaller than 12 GiB on this machine")
    before = meminfo_shmem_kib()
    rt = runtime(config=DEFAULT_CONFIG, instance=unique("full"))
    info = os.stat(rt.shm_path)
    assert info.st_size == 12 << 30
    assert info.st_mode & 0o777 == 0o600
    grown_mib = (meminfo_shmem_kib() - before) / 1024
    assert grown_mib < 64, f"Shmem grew by {grown_mib:.1f} MiB for an idle 12 GiB segment"
    assert rt.stop() == 0
