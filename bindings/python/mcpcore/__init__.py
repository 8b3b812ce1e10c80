"""mcpcore - Python access to a running mcpcore instance's shared memory.

    import mcpcore, numpy

    with mcpcore.attach("default") as seg:
        print(seg.regions)                          # the region table
        feats = numpy.frombuffer(seg.region("learning.features"), dtype=numpy.uint8)
        feats[:4] = 1                               # zero-copy: other processes see it
        pong = seg.ping("state")                    # a Control PONG from the worker
        ring = seg.open_ring("state", "producer")   # client<n>->state
        ring.send(mcpcore.MCPMessage(message_type="tools/list", payload=b"{}"))

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

__all__ = [
    "attach", "Segment", "Ring", "Region", "Frame",
    "Error", "NoSegmentError", "AbiError", "NotRunningError", "NoSlotError",
    "FullError", "PeerGoneError",
    "Control", "MCPMessage", "LearningData", "LearningModel", "TrainingData",
    "KIND_RAW", "KIND_CONTROL", "KIND_MCP", "KIND_LEARNING_DATA",
    "KIND_LEARNING_MODEL", "KIND_TRAINING_DATA", "WORKERS", "mcpcore_pb2",
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

_KIND_OF_TYPE = {
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
        out = self.open_ring(worker, "producer")
        back = self.open_ring(worker, "consumer")
        nonce = int.from_bytes(os.urandom(8), "little")
        out.send(Control(op=Control.PING, nonce=nonce, sent_ns=time.monotonic_ns()))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            # straight from the ring: the backlog holds no PONGs
            got = self._seg.recv(back.index, left) if left > 0 else None
            frame = None if got is None else Frame(*got)
            if frame is None:
                state = self._seg.slots()[out.dst]["state"]
                raise TimeoutError("no PONG from %s within %g s (worker state: %s)"
                                   % (worker, timeout, state))
            if frame.kind == KIND_CONTROL:
                msg = _decode(frame, back.name)
                if msg.op == Control.PONG:
                    if msg.nonce == nonce:
                        return msg
                    continue        # the answer to an earlier ping that timed out
            # anything else is the caller's: keep it for Ring.recv
            self._backlog.setdefault(back.index, collections.deque()).append(frame)

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
