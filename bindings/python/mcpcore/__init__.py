"""mcpcore - Python access to a running mcpcore instance's shared memory.

    import mcpcore, numpy

    with mcpcore.attach("default") as seg:
        print(seg.regions)                          # the region table
        feats = numpy.frombuffer(seg.region("learning.features"), dtype=numpy.uint8)
        feats[:4] = 1                               # zero-copy: other processes see it
        pong = seg.ping("state")                    # a Control PONG from the worker
        ring = seg.open_ring("state", "producer")   # client<n>->state
        ring.send(mcpcore.MCPMessage(message_type="tools/list", payload=b"{}"))
        seg.metrics.counter("learner_batches_total", "Batches trained").inc()
        seg.metrics.histogram("learning_prediction_seconds", "Per prediction").observe(0.002)

seg.metrics (mcpcore.metrics) registers and updates this process's metrics
in its slot's block of shared memory; the monitor worker serves them to
Prometheus.  mcpcore.jsonlog formats log lines as the C processes do.

The segment is mapped at whatever address this process gets; everything
in it is addressed by offsets, so nothing needs relocating.  Sending and
receiving need a client slot: the first ring operation (or ping) claims
one, labelled "python"; close() gives it back, and if the process dies
the supervisor reaps it.

Frames carry one protobuf message of mcpcore.proto; the frame kind says
which (RAW bytes, Control, MCPMessage, LearningData, LearningModel,
TrainingData).  Ring.send() takes a message object (or bytes for RAW) and
Ring.recv() returns the decoded object.

Errors are exceptions: NoSegmentError (instance not running), AbiError
(segment from another mcpcore version), NotRunningError (segment not
initialised or its supervisor gone), PermissionError (segment of another
user), NoSlotError (every client slot taken), FullError (back-pressure:
retry later), PeerGoneError (destination failed or stopped).  All but
PermissionError derive from mcpcore.Error (an OSError).

Threads: a Segment may be shared between threads; its calls are
serialised by a per-Segment lock, and the GIL is released while waiting.
Each consumer ring should be read by one thread (two readers would get
each other's frames).  After fork() the child must not use the parent's
slot: Segment.slot is None there and the next ring operation claims a
slot of its own.
"""

import collections
import os
import threading
import time

from . import _mcpcore
from ._mcpcore import (
    AbiError,
    Error,
    FullError,
    NoSegmentError,
    NoSlotError,
    NotRunningError,
    PeerGoneError,
)
from . import mcpcore_pb2
from .mcpcore_pb2 import Control, LearningData, LearningModel, MCPMessage, TrainingData
from . import jsonlog, metrics_pb2
from .metrics import METRICS_REL_ERROR, Metrics
from .metrics_pb2 import MetricsSnapshot
from . import state_pb2
from .state_pb2 import StateChangeBatch, StateOp, StateReply, StateRequest, StateResult
from . import persist_pb2
from .persist_pb2 import PersistReply, PersistRequest

__all__ = [
    "attach", "Segment", "Ring", "Region", "Frame",
    "Error", "NoSegmentError", "AbiError", "NotRunningError", "NoSlotError",
    "FullError", "PeerGoneError", "StateError", "StateValue",
    "Control", "MCPMessage", "LearningData", "LearningModel", "TrainingData",
    "KIND_RAW", "KIND_CONTROL", "KIND_MCP", "KIND_LEARNING_DATA",
    "KIND_LEARNING_MODEL", "KIND_TRAINING_DATA", "WORKERS", "mcpcore_pb2", "state_pb2",
    "KIND_STATE_REQUEST", "KIND_STATE_REPLY", "KIND_STATE_CHANGES",
    "Metrics", "MetricsSnapshot", "KIND_METRICS_SNAPSHOT", "METRICS_REL_ERROR", "jsonlog",
    "Persist", "PersistError", "PersistRequest", "PersistReply", "persist_pb2",
    "KIND_PERSIST_REQUEST", "KIND_PERSIST_REPLY",
]

# Frame kinds (enum mc_frame_kind in proto/mc_proto.h).
KIND_RAW = _mcpcore.KIND_RAW
KIND_CONTROL = _mcpcore.KIND_CONTROL
KIND_MCP = _mcpcore.KIND_MCP
KIND_LEARNING_DATA = _mcpcore.KIND_LEARNING_DATA
KIND_LEARNING_MODEL = _mcpcore.KIND_LEARNING_MODEL
KIND_TRAINING_DATA = _mcpcore.KIND_TRAINING_DATA

#: Worker names in slot order (slot 1 is "state").
WORKERS = _mcpcore.WORKERS

# state manager (state.proto, proto/mc_proto.h)
KIND_STATE_REQUEST = 10
KIND_STATE_REPLY = 11
KIND_STATE_CHANGES = 12

# persistence worker (persist.proto, proto/mc_proto.h)
KIND_PERSIST_REQUEST = _mcpcore.KIND_PERSIST_REQUEST
KIND_PERSIST_REPLY = _mcpcore.KIND_PERSIST_REPLY

#: The monitor's MetricsSnapshot frames (metrics.proto), to the persistence worker.
KIND_METRICS_SNAPSHOT = _mcpcore.KIND_METRICS_SNAPSHOT

_KIND_OF_TYPE = {
    PersistRequest: KIND_PERSIST_REQUEST,
    PersistReply: KIND_PERSIST_REPLY,
    MetricsSnapshot: KIND_METRICS_SNAPSHOT,
    StateRequest: KIND_STATE_REQUEST,
    StateReply: KIND_STATE_REPLY,
    StateChangeBatch: KIND_STATE_CHANGES,
    Control: KIND_CONTROL,
    MCPMessage: KIND_MCP,
    LearningData: KIND_LEARNING_DATA,
    LearningModel: KIND_LEARNING_MODEL,
    TrainingData: KIND_TRAINING_DATA,
}
_TYPE_OF_KIND = {kind: cls for cls, kind in _KIND_OF_TYPE.items()}

#: One entry of the region table.
Region = collections.namedtuple("Region", "name offset size writer")

#: A received frame, undecoded: source slot, kind, payload bytes, sequence number.
Frame = collections.namedtuple("Frame", "src kind data seq")

_MODES = ("producer", "consumer")


def attach(instance="default", readonly=False):
    """Map the segment of a running instance and return a Segment.

    readonly=True maps it read-only: region views are read-only and the
    Segment cannot claim a slot, send or receive.

    Raises NoSegmentError, AbiError, NotRunningError or PermissionError,
    with a message naming the segment and what to do.
    """
    return Segment(instance, readonly)


def _encode(msg):
    """(kind, bytes) for a protobuf message of mcpcore.proto or raw bytes."""
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return KIND_RAW, msg
    kind = _KIND_OF_TYPE.get(type(msg))
    if kind is None:
        raise TypeError(
            "can send a message of mcpcore.proto (%s) or bytes, not %s"
            % (", ".join(c.__name__ for c in _KIND_OF_TYPE), type(msg).__name__))
    return kind, msg.SerializeToString()


def _decode(frame, ring_name):
    """The protobuf object a frame carries; bytes for RAW and unknown kinds."""
    cls = _TYPE_OF_KIND.get(frame.kind)
    if cls is None:
        return frame.data
    msg = cls()
    try:
        msg.ParseFromString(frame.data)
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise Error("frame %d on ring %s (kind %d, %d bytes) is not a valid %s: %s"
                    % (frame.seq, ring_name, frame.kind, len(frame.data),
                       cls.__name__, exc)) from exc
    return msg


class Segment:
    """A mapped mcpcore segment (see attach()).

    Use as a context manager, or call close(): it releases the client slot
    and unmaps the segment.  close() raises BufferError while memoryviews
    or numpy arrays over regions are alive.
    """

    def __init__(self, instance="default", readonly=False):
        if not isinstance(instance, str):
            raise TypeError("instance must be a str, not %s" % type(instance).__name__)
        self._seg = _mcpcore.Segment(instance, bool(readonly))
        self._region_index = {r[0]: i for i, r in enumerate(self._seg.regions())}
        self._rings = {}            # (name as asked, mode) -> Ring, for our current slot
        self._backlog = {}          # ring index -> deque of Frame set aside by ping()
        self._ping_lock = threading.Lock()
        self.metrics = Metrics(self)    # this process's metrics block (mcpcore.metrics)
        self.state = State(self)
        self.persist = Persist(self)    # the persistence worker: durability, models, training

    # -- identity -----------------------------------------------------------

    @property
    def instance(self):
        """Instance name."""
        return self._seg.instance

    @property
    def size(self):
        """Segment size in bytes (the sum of the region sizes)."""
        return self._seg.size

    @property
    def readonly(self):
        """True when attached read-only."""
        return self._seg.readonly

    @property
    def closed(self):
        """True after close()."""
        return self._seg.closed

    @property
    def slot(self):
        """Our client slot number, or None before one is claimed."""
        return self._seg.slot

    @property
    def address(self):
        """Where this process mapped the segment (differs between processes)."""
        return self._seg.address

    @property
    def max_frame(self):
        """Largest frame payload in bytes ([memory] max_message_size)."""
        return self._seg.max_frame

    def header(self):
        """Segment header as a dict (supervisor pid, table sizes, ...)."""
        return self._seg.header()

    # -- regions ------------------------------------------------------------

    @property
    def regions(self):
        """The region table: a list of Region(name, offset, size, writer)."""
        return [Region(*r) for r in self._seg.regions()]

    def region(self, name):
        """A writable (read-only if attached so) memoryview of a region, zero-copy.

        numpy.frombuffer(seg.region("learning.features"), dtype=numpy.uint8)
        is an array over the shared memory itself: writes are visible to
        every process attached to the instance.
        """
        if isinstance(name, int) and not isinstance(name, bool):
            index = name
        elif isinstance(name, str):
            index = self._region_index.get(name)
            if index is None:
                raise ValueError("no region %r; regions are: %s"
                                 % (name, ", ".join(self._region_index)))
        else:
            raise TypeError("region name must be a str, not %s" % type(name).__name__)
        return memoryview(self._seg.region(index))

    # -- slots and rings ------------------------------------------------------

    def slots(self):
        """The whole slot table as dicts (slot, name, label, kind, state, pid, ...)."""
        return self._seg.slots()

    @property
    def workers(self):
        """Worker slots: dicts with name, slot, pid, state, restarts, generation,
        heartbeat_age_ms, last_exit_status."""
        return [s for s in self._seg.slots() if s["kind"] == "worker"]

    @property
    def clients(self):
        """Client slots held by a process (pid != 0)."""
        return [s for s in self._seg.slots() if s["kind"] == "client" and s["pid"] != 0]

    @property
    def rings(self):
        """Every ring: dicts with index, name ("client0->state"), src, dst,
        depth, capacity, full_events."""
        return self._seg.rings()

    def status(self):
        """A dict shaped like `mcpcore status --json`."""
        h = self._seg.header()
        slots = self._seg.slots()
        keep = ("name", "slot", "pid", "state", "restarts", "generation",
                "heartbeat_age_ms", "last_exit_status")
        return {
            "instance": h["instance"],
            "segment": h["segment"],
            "size": h["size"],
            "state": h["state"],
            "supervisor": {
                "pid": h["supervisor_pid"],
                "alive": h["supervisor_alive"],
                "heartbeat_age_ms": h["supervisor_heartbeat_age_ms"],
            },
            "workers": [{k: s[k] for k in keep} for s in slots if s["kind"] == "worker"],
            "clients": [{k: s[k] for k in ("name", "label", "slot", "pid", "state",
                                          "heartbeat_age_ms")}
                        for s in slots if s["kind"] == "client" and s["pid"] != 0],
            "rings": [{k: r[k] for k in ("name", "src", "dst", "depth", "capacity",
                                         "full_events")}
                      for r in self._seg.rings()],
        }

    def claim(self, label="python"):
        """Claim a client slot (done automatically by open_ring and ping).

        Returns the slot number; claiming again returns the same slot.
        Raises NoSlotError when all are taken, NotRunningError when the
        supervisor is gone, Error when attached read-only.
        """
        return self._seg.claim(label)

    def release(self):
        """Give the client slot back; frames still queued to it are dropped."""
        self._rings.clear()
        self._backlog.clear()
        self._seg.release()

    def _slot_name(self, slot):
        return self._seg.slots()[slot]["name"]

    def open_ring(self, name, mode="producer"):
        """Open a ring for sending (mode "producer") or receiving ("consumer").

        name is a ring name from Segment.rings ("client0->state") or a
        worker name as shorthand: "state" means the ring from our slot to
        the state worker (producer) or from it to us (consumer).  Claims a
        client slot first if we have none.  Raises ValueError if the ring
        does not exist or does not start (producer) / end (consumer) at our
        slot.
        """
        if not isinstance(name, str):
            raise TypeError("ring name must be a str, not %s" % type(name).__name__)
        asked = (name, mode)
        ring = self._rings.get(asked)
        if ring is not None and ring._slot == self._seg.slot:
            return ring             # fast path: ping() opens its two rings every time
        if mode not in _MODES:
            raise ValueError("mode must be 'producer' or 'consumer', not %r" % (mode,))
        slot = self._seg.claim("python")
        me = self._slot_name(slot)
        rings = self._seg.rings()
        if "->" not in name:
            if name not in WORKERS:
                raise ValueError("no ring or worker named %r: use a ring name such as "
                                 "'%s->state' or a worker name (%s)"
                                 % (name, me, ", ".join(WORKERS)))
            name = "%s->%s" % ((me, name) if mode == "producer" else (name, me))
        found = [r for r in rings if r["name"] == name]
        if not found:
            raise ValueError("no ring named %r in instance '%s' (clients have rings to "
                             "and from each worker only)" % (name, self.instance))
        info = found[0]
        if mode == "producer" and info["src"] != slot:
            raise ValueError("ring %r does not start at this process's slot %s (slot %d): "
                             "a producer can only send on its own rings"
                             % (name, me, slot))
        if mode == "consumer" and info["dst"] != slot:
            raise ValueError("ring %r does not end at this process's slot %s (slot %d): "
                             "a consumer can only receive on rings into its slot"
                             % (name, me, slot))
        for ring in self._rings.values():
            if ring.index == info["index"] and ring.mode == mode and ring._slot == slot:
                break               # the same ring asked for by its other name
        else:
            ring = Ring(self, info, mode, slot)
        self._rings[asked] = ring
        return ring

    def ping(self, worker, timeout=2.0):
        """Round-trip a Control PING through a worker; returns its PONG.

        The PONG carries the worker's name, pid, slot generation and the
        number of frames it has handled.  Raises TimeoutError if no answer
        comes within timeout seconds.  Other frames arriving from that
        worker meanwhile are kept for Ring.recv; PONGs of earlier pings
        that timed out are dropped.  Pings from several threads of one
        Segment take turns.
        """
        if worker not in WORKERS:
            raise ValueError("no worker %r; workers are: %s" % (worker, ", ".join(WORKERS)))
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError("timeout must be a number of seconds > 0, not %r" % (timeout,))
        with self._ping_lock:
            return self._ping(worker, timeout)

    def _ping(self, worker, timeout):
        nonce = int.from_bytes(os.urandom(8), "little")
        out, back = self.open_ring(worker, "producer"), self.open_ring(worker, "consumer")
        out.send(Control(op=Control.PING, nonce=nonce, sent_ns=time.monotonic_ns()))
        msg = self._await_control(back, Control.PONG, nonce, timeout)
        if msg is None:
            state = self._seg.slots()[out.dst]["state"]
            raise TimeoutError("no PONG from %s within %g s (worker state: %s)"
                               % (worker, timeout, state))
        return msg

    def _await_control(self, back, op, nonce, timeout):
        """The Control `op` answering `nonce` on ring back, or None after
        timeout s.  Other frames are kept for Ring.recv; answers to earlier
        requests that timed out are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            # straight from the ring: the backlog holds no answers
            got = self._seg.recv(back.index, left) if left > 0 else None
            if got is None:
                return None
            frame = Frame(*got)
            if frame.kind == KIND_CONTROL:
                msg = _decode(frame, back.name)
                if msg.op == op:
                    if msg.nonce == nonce:
                        return msg
                    continue        # the answer to an earlier request that timed out
            # anything else is the caller's: keep it for Ring.recv
            self._backlog.setdefault(back.index, collections.deque()).append(frame)

    def subscribe(self, timeout=2.0):
        """Ask the router for every MCPMessage (and LearningData) from now on.

        Returns the consumer Ring from the router on which they arrive, in
        order per lane: each inbound JSON-RPC message once it was answered,
        with metadata correlation_id, session, reply, outcome and
        latency_ns.  Read
        it promptly: the router holds everything else back while this ring
        is full, and unsubscribes a client whose ring stays full for 1 s
        (it logs router_subscriber_dropped).  Raises TimeoutError if the
        router does not confirm within timeout seconds.
        """
        return self._subscription(Control.SUBSCRIBE, timeout)

    def unsubscribe(self, timeout=2.0):
        """Stop the messages subscribe() asked for (those already queued stay)."""
        return self._subscription(Control.UNSUBSCRIBE, timeout)

    def _subscription(self, op, timeout):
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError("timeout must be a number of seconds > 0, not %r" % (timeout,))
        with self._ping_lock:
            nonce = int.from_bytes(os.urandom(8), "little")
            out, back = self.open_ring("router", "producer"), self.open_ring("router", "consumer")
            out.send(Control(op=op, nonce=nonce, sent_ns=time.monotonic_ns()))
            msg = self._await_control(back, Control.SUBSCRIBED, nonce, timeout)
            if msg is None:
                raise TimeoutError("the router did not confirm the subscription within %g s"
                                   % timeout)
            if op == Control.SUBSCRIBE and msg.generation != 1:
                raise Error("the router refused the subscription of slot %d" % self.slot)
            return back

    # -- lifetime -------------------------------------------------------------

    def close(self):
        """Release the client slot and unmap.  Idempotent.

        Raises BufferError while region memoryviews/arrays are alive:
        unmapping under them would crash the interpreter.
        """
        self._seg.close()
        self._rings.clear()
        self._backlog.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return repr(self._seg)


class StateError(Error):
    """A state operation the state worker refused; .status names why
    (StateResult.Status: TABLE_FULL, NOT_A_NUMBER, OVERFLOW, ...)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


StateValue = collections.namedtuple("StateValue", "value version mtime_ns expires_ns")


class State:
    """The state manager of a Segment: seg.state.

    Reads (get, scan, stats) go straight to the table in shared memory: no
    lock, no syscall, no message; they need no client slot and work on a
    read-only attach.  Writes (put, cas, delete, incr) are sent to the state
    worker and return once it has applied them (acknowledged: they survive
    a crash of the state worker); they claim a client slot on first use.

    Namespaces, keys and values are bytes or str (UTF-8); values come back
    as bytes.  Versions are integers that strictly increase with every
    change of the instance.
    """

    _S = StateResult

    def __init__(self, segment):
        self._segment = segment
        self._lock = threading.Lock()
        self._next_id = int.from_bytes(os.urandom(6), "little") << 8

    # -- reads ---------------------------------------------------------------

    def get(self, ns, key):
        """StateValue(value, version, mtime_ns, expires_ns), or None."""
        got = _mcpcore.state_get(self._segment._seg, ns, key)
        return None if got is None else StateValue(*got)

    def scan(self, ns, prefix=b""):
        """[(key, value, version), ...] of namespace ns whose key starts with prefix."""
        return _mcpcore.state_scan(self._segment._seg, ns, prefix)

    def stats(self):
        """Table and arena usage (capacity, live, tombstones, arena_*)."""
        return _mcpcore.state_stats(self._segment._seg)

    # -- writes --------------------------------------------------------------

    @staticmethod
    def _b(v, what):
        if isinstance(v, str):
            return v.encode()
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes(v)
        raise TypeError("%s must be bytes or str, not %s" % (what, type(v).__name__))

    @staticmethod
    def _ttl(ttl):
        if ttl is None:
            return 0
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
            raise ValueError("ttl must be seconds > 0 or None, not %r" % (ttl,))
        return max(1, int(ttl * 1000))

    def _call(self, op, timeout):
        """Send one op to the state worker and wait for its result."""
        with self._lock:
            self._next_id += 1
            op.id = self._next_id
            out = self._segment.open_ring("state", "producer")
            back = self._segment.open_ring("state", "consumer")
            out.send(StateRequest(ops=[op]))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                got = self._segment._seg.recv(back.index, left) if left > 0 else None
                if got is None:
                    raise TimeoutError("the state worker did not answer within %g s" % timeout)
                frame = Frame(*got)
                if frame.kind == KIND_STATE_REPLY:
                    for res in _decode(frame, back.name).results:
                        if res.id == op.id:
                            return res
                    continue        # a reply to an earlier call that timed out
                self._segment._backlog.setdefault(back.index, collections.deque()).append(frame)

    def _check(self, res, what):
        S = self._S
        if res.status == S.OK:
            return res
        name = S.Status.Name(res.status)
        if res.status == S.TOO_LARGE or res.status == S.BAD_REQUEST:
            raise ValueError("%s: %s (%s)" % (what, res.error, name))
        raise StateError(name, "%s: %s (%s)" % (what, res.error, name))

    def put(self, ns, key, value, ttl=None, timeout=5.0):
        """Set ns/key to value (expiring after ttl seconds); returns the new version."""
        op = StateOp(kind=StateOp.PUT, ns=self._b(ns, "ns"), key=self._b(key, "key"),
                     value=self._b(value, "value"), ttl_ms=self._ttl(ttl))
        return self._check(self._call(op, timeout), "put").version

    def cas(self, ns, key, expected_version, value, ttl=None, timeout=5.0):
        """Set ns/key only if its version is expected_version (0: only if absent).

        Returns (True, new_version) or (False, current_version)."""
        if isinstance(expected_version, bool) or not isinstance(expected_version, int) \
                or expected_version < 0:
            raise ValueError("expected_version must be an int >= 0")
        op = StateOp(kind=StateOp.CAS, ns=self._b(ns, "ns"), key=self._b(key, "key"),
                     value=self._b(value, "value"), expected_version=expected_version,
                     ttl_ms=self._ttl(ttl))
        res = self._call(op, timeout)
        if res.status == self._S.VERSION_MISMATCH:
            return False, res.version
        return True, self._check(res, "cas").version

    def delete(self, ns, key, timeout=5.0):
        """Delete ns/key; returns the deletion's version.  KeyError if absent."""
        op = StateOp(kind=StateOp.DELETE, ns=self._b(ns, "ns"), key=self._b(key, "key"))
        res = self._call(op, timeout)
        if res.status == self._S.NOT_FOUND:
            raise KeyError((ns, key))
        return self._check(res, "delete").version

    def incr(self, ns, key, delta=1, ttl=None, timeout=5.0):
        """Add delta to a decimal int64 value (absent: 0); returns (value, version)."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError("delta must be an int")
        op = StateOp(kind=StateOp.INCR, ns=self._b(ns, "ns"), key=self._b(key, "key"),
                     delta=delta, ttl_ms=self._ttl(ttl))
        res = self._check(self._call(op, timeout), "incr")
        return int(res.value), res.version


class PersistError(Error):
    """A request the persistence worker could not serve; .status names why
    (PersistReply.Status: NOT_FOUND, TOO_LARGE, UNAVAILABLE, FAILED, ...)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Persist:
    """The persistence worker of a Segment: seg.persist.

    Storing: send MCPMessage, TrainingData or LearningModel frames to the
    worker (save(), or any ring to "persistence"); a frame is stored for
    good -- it survives kill -9 of any process and a machine crash with
    [persistence] sync = "batch" -- once durable_seq() of its sending slot
    reaches its sequence number (what Ring.send returns).  wait_durable()
    waits for that.

    Reading: learners get models and training data through request frames
    answered by the worker (no RocksDB in this process).  Models are
    Git-like: each LearningModel version names its parent_versions;
    versions() lists a model's history, model() reads one version (or the
    latest), ancestors() walks the lineage breadth-first, nearest first.
    Listings page through the store transparently.  Errors: PersistError
    (with .status), TimeoutError when the worker does not answer.
    """

    _R = PersistReply

    def __init__(self, segment):
        self._segment = segment
        self._lock = threading.Lock()
        self._next_id = int.from_bytes(os.urandom(6), "little") << 8

    # -- durability ----------------------------------------------------------

    def _slot(self, slot):
        if slot is None:
            slot = self._segment.slot
            if slot is None:
                raise Error("this process holds no client slot yet: it has sent nothing")
        return slot

    def durable_seq(self, slot=None):
        """Highest sequence number from `slot` (default: ours) durably stored."""
        return _mcpcore.persist_durable_seq(self._segment._seg, self._slot(slot))

    def wait_durable(self, seq, slot=None, timeout=10.0):
        """Wait until frame `seq` of `slot` (default: ours) is durable.

        TimeoutError after `timeout` seconds (the worker may be in a fault:
        see status()), PeerGoneError if the worker has failed for good."""
        if not _mcpcore.persist_wait_durable(self._segment._seg, self._slot(slot), seq,
                                             float(timeout)):
            st = self.status()
            raise TimeoutError("seq %d not durable within %g s (persistence %s, fault: %s)"
                               % (seq, timeout, st.get("state"), st.get("fault")))

    def status(self):
        """The "persistence" object of `mcpcore status --json`, as a dict."""
        import json
        return json.loads(_mcpcore.persist_status(self._segment._seg))

    def save(self, msg, wait=True, timeout=10.0):
        """Send one MCPMessage / TrainingData / LearningModel to the worker;
        with wait, return only once it is durable.  Returns its seq."""
        if not isinstance(msg, (MCPMessage, TrainingData, LearningModel)):
            raise TypeError("save() stores MCPMessage, TrainingData or LearningModel, not %s"
                            % type(msg).__name__)
        seq = self._segment.open_ring("persistence", "producer").send(msg)
        if wait:
            self.wait_durable(seq, timeout=timeout)
        return seq

    # -- requests ------------------------------------------------------------

    def _call(self, req, timeout):
        """Send one PersistRequest and wait for its reply."""
        with self._lock:
            self._next_id += 1
            req.id = self._next_id
            out = self._segment.open_ring("persistence", "producer")
            back = self._segment.open_ring("persistence", "consumer")
            out.send(req)
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                got = self._segment._seg.recv(back.index, left) if left > 0 else None
                if got is None:
                    raise TimeoutError("the persistence worker did not answer within %g s"
                                       % timeout)
                frame = Frame(*got)
                if frame.kind == KIND_PERSIST_REPLY:
                    rep = _decode(frame, back.name)
                    if rep.id == req.id:
                        return rep
                    continue        # a reply to an earlier call that timed out
                self._segment._backlog.setdefault(back.index, collections.deque()).append(frame)

    def _check(self, rep, what):
        if rep.status == self._R.OK:
            return rep
        raise PersistError(self._R.Status.Name(rep.status), "%s: %s (%s)"
                           % (what, rep.error, self._R.Status.Name(rep.status)))

    def _list(self, req, cls, limit, timeout, what):
        """Every record of a listing, following the cursor, at most `limit`."""
        out = []
        while True:
            if limit is not None:
                req.limit = min(limit - len(out), 1 << 20)
            rep = self._check(self._call(req, timeout), what)
            for data in rep.records:
                msg = cls()
                msg.ParseFromString(data)
                out.append(msg)
            if not rep.cursor or (limit is not None and len(out) >= limit):
                return out
            req.cursor = rep.cursor

    def checkpoint(self, timeout=60.0):
        """Ask for a RocksDB checkpoint now; returns its directory."""
        rep = self._call(PersistRequest(op=PersistRequest.CHECKPOINT), timeout)
        return self._check(rep, "checkpoint").checkpoint_path

    def models(self, timeout=10.0):
        """The latest version of every model (without model_data)."""
        return self._list(PersistRequest(op=PersistRequest.MODEL_LIST), LearningModel, None,
                          timeout, "models")

    def versions(self, model_id, with_data=False, timeout=10.0):
        """Every version of model_id, oldest first.  PersistError NOT_FOUND if none."""
        return self._list(PersistRequest(op=PersistRequest.MODEL_VERSIONS, model_id=model_id,
                                         with_data=with_data), LearningModel, None, timeout,
                          "versions of %r" % model_id)

    def model(self, model_id, version=None, timeout=10.0):
        """One version of model_id (the latest when version is None), with its data.

        KeyError when there is no such model or version."""
        req = PersistRequest(op=PersistRequest.MODEL_GET, model_id=model_id,
                             latest=version is None, version=version or 0)
        rep = self._call(req, timeout)
        if rep.status == self._R.NOT_FOUND:
            raise KeyError((model_id, version))
        self._check(rep, "model %r" % model_id)
        msg = LearningModel()
        msg.ParseFromString(rep.records[0])
        return msg

    def ancestors(self, model_id, version, with_data=False, limit=None, timeout=10.0):
        """The ancestors of (model_id, version), breadth-first, nearest first."""
        req = PersistRequest(op=PersistRequest.MODEL_ANCESTORS, model_id=model_id,
                             version=version, with_data=with_data)
        try:
            return self._list(req, LearningModel, limit, timeout, "ancestors of %r" % model_id)
        except PersistError as exc:
            if exc.status == "NOT_FOUND":
                raise KeyError((model_id, version)) from exc
            raise

    def training(self, since=0, limit=None, dataset=None, timeout=10.0):
        """TrainingData stored at or after `since` (ns since the epoch), oldest
        first, at most `limit`, only of `dataset` when given."""
        req = PersistRequest(op=PersistRequest.TRAINING, since=since, dataset=dataset or "")
        return self._list(req, TrainingData, limit, timeout, "training")


class Ring:
    """One SPSC ring, opened as producer (send) or consumer (recv).

    Obtained from Segment.open_ring().  name, index, src, dst (slot
    numbers), peer (the worker at the other end), mode, capacity; depth is
    read live.
    """

    def __init__(self, segment, info, mode, slot):
        self._segment = segment
        self._slot = slot
        self.name = info["name"]
        self.index = info["index"]
        self.src = info["src"]
        self.dst = info["dst"]
        self.capacity = info["capacity"]
        self.mode = mode
        self.peer = info["name"].split("->")[1 if mode == "producer" else 0]

    @property
    def depth(self):
        """Frames waiting in the ring now."""
        return self._segment._seg.ring_depth(self.index)

    def send(self, msg):
        """Send one message: a protobuf message of mcpcore.proto, or bytes (RAW).

        Returns the frame's sequence number.  Raises FullError on
        back-pressure (ring full or frame pool exhausted: retry later),
        PeerGoneError if the worker has failed or stopped, ValueError if
        the message exceeds max_message_size.
        """
        if self.mode != "producer":
            raise ValueError("ring %s is open as consumer: open it as producer to send"
                             % self.name)
        kind, data = _encode(msg)
        return self._segment._seg.send(self.dst, kind, data)

    def _take(self, timeout):
        if self.mode != "consumer":
            raise ValueError("ring %s is open as producer: open it as consumer to receive"
                             % self.name)
        backlog = self._segment._backlog.get(self.index)
        if backlog:
            return backlog.popleft()
        got = self._segment._seg.recv(self.index, timeout)
        return None if got is None else Frame(*got)

    def recv_frame(self, timeout=None):
        """The next Frame(src, kind, data, seq), undecoded, or None on timeout."""
        return self._take(timeout)

    def recv(self, timeout=None):
        """The next message, decoded (bytes for RAW frames), or None on timeout.

        timeout is in seconds; None waits forever (Ctrl-C interrupts).
        """
        frame = self._take(timeout)
        return None if frame is None else _decode(frame, self.name)

    def __repr__(self):
        return "<mcpcore ring %s (%s, index %d)>" % (self.name, self.mode, self.index)
