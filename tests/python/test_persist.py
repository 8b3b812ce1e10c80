"""seg.persist: what a Python learner does with the persistence worker --
store models and training data durably, read them back through request
frames (no RocksDB in the learner), follow a model's lineage, ask for a
checkpoint, read the control block.

The module runs its own runtime on config/test.toml with rocksdb_path in a
temporary directory (the shared fixture's store is config/data, which other
suites use too)."""
import json
import os
import secrets
import signal
import subprocess
import time

import pytest

import mcpcore
from conftest import MCPCORE_BIN, TEST_CONFIG, Runtime, cli, shm_path


@pytest.fixture(scope="module")
def prt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("persist")
    cfg = tmp / "mcpcore.toml"
    text = open(TEST_CONFIG).read().replace('rocksdb_path = "data"',
                                            'rocksdb_path = "%s"' % (tmp / "db"))
    assert str(tmp / "db") in text
    cfg.write_text(text)
    instance = "pyp" + secrets.token_hex(6)
    log_path = tmp / "mcpcore.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([MCPCORE_BIN, "run", "--config", str(cfg), "--instance",
                                 instance], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    rt = Runtime(instance, proc, log_path)
    rt.tmp = tmp
    rt.config = str(cfg)
    try:
        rt.wait_running()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    yield rt
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, rt.log()[-3000:]
    assert not shm_path(instance).exists()


@pytest.fixture
def seg(prt):
    with mcpcore.attach(prt.instance) as s:
        yield s


def model(mid, version, parents=(), data=b"weights"):
    return mcpcore.LearningModel(model_id=mid, version=version, created_at=time.time_ns(),
                                 model_data=data, parent_versions=list(parents),
                                 performance_metrics={"loss": 1.0 / version})


def test_save_waits_until_durable(seg):
    seq = seg.persist.save(mcpcore.MCPMessage(message_type="ping", payload=b"{}"))
    assert seg.persist.durable_seq() >= seq
    seg.persist.wait_durable(seq, timeout=0)            # already: returns at once
    st = seg.persist.status()
    assert st["state"] == "running" and st["fault"] is None
    assert st["sync"] == "batch"
    assert st["durable"][next(s["name"] for s in seg.slots() if s["slot"] == seg.slot)] >= seq
    with pytest.raises(TypeError):
        seg.persist.save(mcpcore.Control())


def test_model_lineage(seg):
    mid = "net-" + secrets.token_hex(3)
    seg.persist.save(model(mid, 1))
    seg.persist.save(model(mid, 2, [1]))
    seg.persist.save(model(mid, 3, [1]))
    seg.persist.save(model(mid, 4, [2, 3], data=b"x" * 1000))
    vs = seg.persist.versions(mid)
    assert [m.version for m in vs] == [1, 2, 3, 4]
    assert all(m.model_data == b"" for m in vs)     # listings carry no weights
    assert [m.model_data for m in seg.persist.versions(mid, with_data=True)][3] == b"x" * 1000
    latest = seg.persist.model(mid)
    assert latest.version == 4 and latest.model_data == b"x" * 1000
    assert latest.performance_metrics["loss"] == pytest.approx(0.25)
    assert seg.persist.model(mid, 2).parent_versions == [1]
    assert [m.version for m in seg.persist.ancestors(mid, 4)] == [2, 3, 1]
    assert [m.version for m in seg.persist.ancestors(mid, 4, limit=2)] == [2, 3]
    assert mid in [m.model_id for m in seg.persist.models()]
    with pytest.raises(KeyError):
        seg.persist.model(mid, 99)
    with pytest.raises(KeyError):
        seg.persist.ancestors(mid, 99)
    with pytest.raises(mcpcore.PersistError) as exc:
        seg.persist.versions("no-such-model")
    assert exc.value.status == "NOT_FOUND"


def test_reads_see_what_was_just_sent(seg):
    """No wait between the write and the read: the worker commits first."""
    mid = "fresh-" + secrets.token_hex(3)
    seg.persist.save(model(mid, 1), wait=False)
    assert seg.persist.model(mid).version == 1


def test_training_data_pages_through_the_store(seg):
    ds = "ds-" + secrets.token_hex(3)
    t0 = time.time_ns()
    for i in range(300):
        seg.persist.save(mcpcore.TrainingData(
            dataset=ds, timestamp=t0 + i,
            samples=[mcpcore.LearningData(features=[float(i)] * 64, label=i)]), wait=False)
    seg.persist.save(mcpcore.TrainingData(dataset="other", timestamp=t0 + 5))
    got = seg.persist.training(since=t0, dataset=ds)
    assert [t.timestamp for t in got] == [t0 + i for i in range(300)]
    assert got[7].samples[0].label == 7
    assert len(seg.persist.training(since=t0 + 100, dataset=ds, limit=50)) == 50
    assert len(seg.persist.training(since=t0)) == 301


def test_big_model_is_too_large_for_a_reply(seg, prt):
    mid = "big-" + secrets.token_hex(3)
    big = b"w" * (seg.max_frame - 200)          # fits a frame to send, not a reply with its extras
    seg.persist.save(model(mid, 1, data=big))
    with pytest.raises(mcpcore.PersistError) as exc:
        seg.persist.model(mid)
    assert exc.value.status == "TOO_LARGE"
    assert seg.persist.versions(mid)[0].version == 1    # metadata still listed


def test_checkpoint_from_python_and_cli(seg, prt):
    path = seg.persist.checkpoint()
    assert path.startswith(str(prt.tmp / "checkpoints"))
    assert os.path.isfile(os.path.join(path, "CURRENT"))
    out = cli("checkpoint", "--instance", prt.instance, "--json")
    assert json.loads(out.stdout)["path"] != path
    assert seg.persist.status()["checkpoints"] >= 2


def test_status_in_cli_and_readonly_attach(prt):
    st = json.loads(cli("status", "--instance", prt.instance, "--json").stdout)
    assert st["persistence"]["state"] == "running"
    with mcpcore.attach(prt.instance, readonly=True) as ro:
        assert ro.persist.status()["path"] == str(prt.tmp / "db")
        assert ro.persist.durable_seq(slot=mcpcore._mcpcore.PERSISTENCE_SLOT) == 0
        with pytest.raises(ValueError):
            ro.persist.durable_seq(slot=999)


def test_dump_decodes_what_python_stored(seg, prt):
    mid = "dump-" + secrets.token_hex(3)
    seg.persist.save(model(mid, 5, [4]))
    out = cli("dump", "--config", prt.config, "--cf", "models")
    recs = [json.loads(l) for l in out.stdout.splitlines()]
    mine = [r for r in recs if r["key"]["model_id"] == mid]
    assert len(mine) == 1
    assert mine[0]["value"]["parent_versions"] == [4]
    assert mine[0]["key"]["version"] == 5
