"""mcpcore.metrics - this process's metrics in shared memory (seg.metrics).

    seg = mcpcore.attach("default")
    frames = seg.metrics.counter("learner_batches_total", "Batches trained")
    frames.inc()
    acc = seg.metrics.gauge("learning_model_accuracy", "Accuracy of the current model",
                            labels={"model": "ranker"})
    acc.set(0.93)
    lat = seg.metrics.histogram("learning_prediction_seconds", "Time per prediction")
    with lat.time():
        predict(x)
    lat.observe(0.0021)                      # seconds

The process's client slot (claimed on first use) owns a metrics block in
the segment; it is its only writer, and updates cost no syscall.  The
monitor worker exports every block at /metrics as mcpcore_<name>{worker=
"client<N>", <labels>}.  Names are snake_case without the mcpcore_ prefix;
counters end in _total; a name ending in _seconds (histograms) or
_seconds_total (counters) is a time, given in seconds.  Histogram
quantiles are within METRICS_REL_ERROR (1/32) of the exact values.

The block is reset when the slot is claimed and reclaimed when the process
releases it or dies; a Metric object survives a re-claim (it registers
again in the new block, from zero).
"""

import contextlib
import errno
import re
import time

from . import _mcpcore, jsonlog
from ._mcpcore import Error

__all__ = ["Metrics", "Counter", "Gauge", "Histogram", "METRICS_REL_ERROR", "parse_labels"]

#: Bound of a histogram quantile's relative error (mc_hist.h).
METRICS_REL_ERROR = _mcpcore.METRICS_REL_ERROR

_log = jsonlog.get_logger("python")

_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_labels(text):
    """'k="v",k2="v2"' (as the block stores them) -> {"k": "v", "k2": "v2"}."""
    return {k: re.sub(r"\\(.)", r"\1", v) for k, v in _LABEL.findall(text)}


class _Metric:
    _type = None

    def __init__(self, metrics, name, help, labels):
        self._metrics = metrics
        self.name = name
        self.help = help
        self.labels = dict(labels or {})
        self._handle = None
        self._register()

    def _register(self):
        seg = self._metrics._segment
        seg.claim()                             # idempotent; our slot owns the block
        self._handle = _mcpcore.metric_register(seg._seg, self._type, self.name, self.help,
                                                self.labels or None)

    def _update(self, fn, value):
        try:
            fn(self._metrics._segment._seg, self._handle, value)
        except Error as exc:
            if exc.errno != errno.ESTALE and self._metrics._segment.slot is not None:
                raise
            # the slot was released (and maybe claimed again): a new, empty block
            self._register()
            _log.info("metric %s registered again in the block of slot %s", self.name,
                      self._metrics._segment.slot,
                      extra={"event": "metric_reregistered", "metric": self.name})
            fn(self._metrics._segment._seg, self._handle, value)

    def __repr__(self):
        return "<mcpcore %s %s%s>" % (self._type, self.name,
                                      "{%s}" % ",".join("%s=%r" % kv for kv in
                                                        sorted(self.labels.items()))
                                      if self.labels else "")


class Counter(_Metric):
    """A monotonic counter (uint64; *_seconds_total counts seconds)."""
    _type = "counter"

    def inc(self, amount=1):
        """Add amount >= 0 (an integer, or seconds for *_seconds_total)."""
        self._update(_mcpcore.metric_inc, amount)


class Gauge(_Metric):
    """A value that goes up and down (a double)."""
    _type = "gauge"

    def set(self, value):
        self._update(_mcpcore.metric_set, value)

    def inc(self, delta=1.0):
        self._update(_mcpcore.metric_add, delta)

    def dec(self, delta=1.0):
        self._update(_mcpcore.metric_add, -delta)


class Histogram(_Metric):
    """A log-linear histogram (quantiles within METRICS_REL_ERROR)."""
    _type = "histogram"

    def observe(self, value):
        """Record one sample: seconds for *_seconds, else an integer >= 0."""
        self._update(_mcpcore.metric_observe, value)

    @contextlib.contextmanager
    def time(self):
        """Observe the duration of the with-block, in seconds."""
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            self.observe(time.perf_counter() - t0)


class Metrics:
    """The metrics API of one Segment (seg.metrics)."""

    def __init__(self, segment):
        self._segment = segment
        self._known = {}

    def _get(self, cls, name, help, labels):
        key = (cls._type, name, tuple(sorted((labels or {}).items())))
        metric = self._known.get(key)
        if metric is None:
            metric = self._known[key] = cls(self, name, help, labels)
        return metric

    def counter(self, name, help, labels=None):
        """Register (or find) a counter; returns a Counter."""
        return self._get(Counter, name, help, labels)

    def gauge(self, name, help, labels=None):
        """Register (or find) a gauge; returns a Gauge."""
        return self._get(Gauge, name, help, labels)

    def histogram(self, name, help, labels=None):
        """Register (or find) a histogram; returns a Histogram."""
        return self._get(Histogram, name, help, labels)

    def read(self, process=None):
        """The metrics block of a process, or None when it has none.

        process: a slot number, a slot name ("state", "supervisor",
        "client0"), or None for this process's own slot.  Returns a dict:
        slot, pid, generation, owners; the slot's channel figures, which
        nothing on the frame path counts (they come from the ring and pool
        cursors, since the instance started, whoever held the slot):
        frames_sent (frames put into its rings; a frame sent to n
        destinations counts n times), frames_received (frames taken from
        its rings), pool_bytes_written (bytes of the frames it published,
        headers and padding included); messages_handled, a dict by frame
        kind ("Control", ...) of the messages a worker's loop handled
        (empty for clients and for workers with a loop of their own); and
        metrics: a list of dicts (name, labels as a dict, type, help, unit,
        and value, or count, sum, p50, p90, p99, max for histograms; base
        units).  Received bytes are not measured.
        """
        seg = self._segment
        if process is None:
            slot = seg.slot
            if slot is None:
                return None
        elif isinstance(process, int) and not isinstance(process, bool):
            slot = process
        else:
            names = [s["name"] for s in seg.slots()]
            if process not in names:
                raise ValueError("no process %r; slots are: %s" % (process, ", ".join(names)))
            slot = names.index(process)
        block = _mcpcore.metrics_read(seg._seg, slot)
        if block is not None:
            for m in block["metrics"]:
                m["labels"] = parse_labels(m["labels"])
        return block
