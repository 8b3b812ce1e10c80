"""Fixtures for the mcpcore Python binding tests.

Each test module gets its own real runtime: `mcpcore run` on the test
configuration under a unique instance name ("pyt" + random hex), so the
suite can run in parallel with the other ctest tests.  Environment (set by
ctest, see bindings/python/CMakeLists.txt):

    PYTHONPATH      build/python (the mcpcore package and its extension)
    MCPCORE_BIN     build/bin/mcpcore
    MC_SOURCE_DIR   the source tree (config/test.toml)
    MCPCORE_TEST_CONFIG   optional: another config to run the suite on
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("MC_SOURCE_DIR") or Path(__file__).resolve().parents[2])
MCPCORE_BIN = os.environ.get("MCPCORE_BIN") or str(SOURCE_DIR / "build" / "bin" / "mcpcore")
TEST_CONFIG = os.environ.get("MCPCORE_TEST_CONFIG") or str(SOURCE_DIR / "config" / "test.toml")

# Without PYTHONPATH (a run by hand), use the default build directory.
try:
    import mcpcore  # noqa: F401
except ImportError:
    sys.path.insert(0, str(SOURCE_DIR / "build" / "python"))
    import mcpcore  # noqa: F401

#: Environment for child Python processes: they must import the same mcpcore.
PY_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    p for p in (str(Path(mcpcore.__file__).resolve().parents[1]),
                os.environ.get("PYTHONPATH")) if p))

START_TIMEOUT = 10.0
STOP_TIMEOUT = 20.0


def cli(*args, check=True):
    """Run the mcpcore binary; returns the CompletedProcess (text)."""
    proc = subprocess.run([MCPCORE_BIN, *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError("mcpcore %s failed (exit %d): %s"
                             % (" ".join(args), proc.returncode, proc.stderr.strip()))
    return proc


def private_config(tmp):
    """TEST_CONFIG with the RocksDB directory moved into tmp: a test must
    not see (or restore) what another test stored."""
    lines = open(TEST_CONFIG).read().splitlines()
    out, section = [], ""
    for line in lines:
        st = line.strip()
        if st.startswith("[") and st.endswith("]"):
            section = st[1:-1]
        elif section == "persistence" and st.startswith("rocksdb_path"):
            continue
        out.append(line)
        if st == "[persistence]":
            out.append('rocksdb_path = "%s"' % (tmp / "data"))
    if "[persistence]" not in (l.strip() for l in lines):
        out += ["[persistence]", 'rocksdb_path = "%s"' % (tmp / "data")]
    path = tmp / "mcpcore.toml"
    path.write_text("\n".join(out) + "\n")
    return str(path)


def shm_path(instance):
    return Path("/dev/shm") / ("mcpcore." + instance)


class Runtime:
    """A running `mcpcore run` under a unique instance name."""

    def __init__(self, instance, proc, log_path):
        self.instance = instance
        self.proc = proc
        self.log_path = log_path

    def status(self):
        """`mcpcore status --json` as a dict."""
        return json.loads(cli("status", "--instance", self.instance, "--json").stdout)

    def worker(self, name):
        """The status entry of one worker."""
        return next(w for w in self.status()["workers"] if w["name"] == name)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_running(self, timeout=START_TIMEOUT):
        """Poll status until all five workers are running."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("mcpcore run exited with %d before it was ready:\n%s"
                                     % (self.proc.returncode, self.log()[-4000:]))
            proc = cli("status", "--instance", self.instance, "--json", check=False)
            if proc.returncode == 0:
                last = json.loads(proc.stdout)
                workers = last["workers"]
                if len(workers) == 5 and all(w["state"] == "running" for w in workers):
                    return last
            time.sleep(0.05)
        raise AssertionError("instance %s not running after %.0f s; last status: %s\nlog:\n%s"
                             % (self.instance, timeout, last, self.log()[-4000:]))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """Start a runtime for the test module; stop it (SIGTERM, exit 0) after."""
    instance = "pyt" + secrets.token_hex(6)
    tmp = tmp_path_factory.mktemp("runtime")
    log_path = tmp / "mcpcore.log"
    config = private_config(tmp)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [MCPCORE_BIN, "run", "--config", config, "--instance", instance],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    rt = Runtime(instance, proc, log_path)
    try:
        rt.wait_running()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    yield rt
    # a test that failed half-way may have left a worker stopped
    if shm_path(instance).exists():
        try:
            for w in rt.status()["workers"]:
                if w["pid"]:
                    os.kill(w["pid"], signal.SIGCONT)
        except (AssertionError, ProcessLookupError, ValueError):
            pass
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("mcpcore run did not stop within %.0f s of SIGTERM:\n%s"
                             % (STOP_TIMEOUT, rt.log()[-4000:]))
    assert rc == 0, "mcpcore run exited with %d:\n%s" % (rc, rt.log()[-4000:])
    assert not shm_path(instance).exists(), "segment %s left behind" % shm_path(instance)


@pytest.fixture
def seg(runtime):
    """A read-write attach to the module's runtime, closed after the test."""
    with mcpcore.attach(runtime.instance) as s:
        yield s
