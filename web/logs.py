"""Log lines that can be followed across processes: text or JSON, each tagged with the
request it belongs to.

- `setup(node)` configures a process's logging once (bazar/cli.py calls it). Text stays
  the default; `BAZAR_LOG_FORMAT=json` makes every line one JSON object with `ts`,
  `level`, `node` (catalog1, frontend1, ...), `logger`, `msg` and, for a line logged while
  a request is handled, `request_id`. Access lines add `method`, `route`, `status` and
  `duration_ms`.
- The request id travels in `X-Request-ID` (web/protocol.py). A client may choose it;
  it is kept only if it is 1-64 characters of `A-Za-z0-9._-`, so that it can go into a
  header and a log line as it is, and is replaced by a fresh one otherwise. While a
  request is handled its id sits in a context variable of the handling thread
  (`begin_request` / `end_request`, called by `web.metrics.instrument`): every log line
  of that thread carries it, the answer returns it, and the group client
  (web/client.py) sends it on with each call it makes for the request, so the
  frontend, the order replica and the catalog replica all log the same id.
- Access lines (`log_access`) are written by a background thread, a batch every
  `ACCESS_FLUSH_SECONDS`, so that a request pays for none of the logging (`_AccessLines`).
"""
from __future__ import annotations

import collections
import contextvars
import datetime
import itertools
import json
import logging
import os
import re
import secrets
import threading
import time

from bazar.web.protocol import REQUEST_ID_HEADER

FORMAT_ENV = "BAZAR_LOG_FORMAT"
LEVEL_ENV = "BAZAR_LOG_LEVEL"
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")
ACCESS_FLUSH_SECONDS = 0.05  # how long an access line may wait for the writer (_AccessLines)

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("bazar_request_id", default=None)
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A fresh id is this process's random prefix and a counter: unique across processes and
# restarts, and cheaper than a random id per request (every request without one gets one).
_ID_PREFIX = secrets.token_hex(6)
_ID_SEQUENCE = itertools.count(1)

access_log = logging.getLogger("bazar.access")
_writer: "_AccessLines | None" = None  # started by setup()


# -- the request id ---------------------------------------------------------------

def request_id_from(supplied: str | None) -> str:
    """`supplied` if it is a valid request id, else a fresh one."""
    if supplied and _VALID_REQUEST_ID.fullmatch(supplied):
        return supplied
    return f"{_ID_PREFIX}-{next(_ID_SEQUENCE)}"


def begin_request(supplied: str | None) -> contextvars.Token:
    """Adopt the request id a caller sent (or a fresh one) for this thread's request."""
    return _REQUEST_ID.set(request_id_from(supplied))


def end_request(token: contextvars.Token) -> None:
    _REQUEST_ID.reset(token)


def current_request_id() -> str | None:
    """The id of the request this thread is handling, None outside a request."""
    return _REQUEST_ID.get()


def request_id_headers() -> dict[str, str]:
    """The header that passes the current request's id on to the next hop (none outside a request)."""
    request_id = _REQUEST_ID.get()
    return {REQUEST_ID_HEADER: request_id} if request_id else {}


def log_access(method: str, route: str, status: int, seconds: float, request_id: str | None,
               quiet: bool = False) -> None:
    """One access line: method, route rule, status and duration, for request `request_id`
    (given, because the line may be written after the request's context is gone). `quiet`
    lines (the routes monitoring polls every second) go out at DEBUG, so they do not drown
    the rest.

    In a process `setup` configured, the line is only noted here, and written by the
    background writer (`_AccessLines`): the request's thread does no logging work at all."""
    level = logging.DEBUG if quiet else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    line = (time.time(), level, method, route, status, seconds, request_id)
    if _writer is not None:
        _writer.add(line)
    else:  # not set up (a library use, unit tests): logged at once
        access_log.handle(_access_record(*line))


def _access_record(created: float, level: int, method: str, route: str, status: int, seconds: float,
                   request_id: str | None) -> logging.LogRecord:
    """The access line as a log record stamped with the time the request was answered."""
    duration_ms = round(seconds * 1000, 2)
    record = access_log.makeRecord(access_log.name, level, "(access)", 0, "%s %s %d %.2f ms",
                                   (method, route, status, duration_ms), None,
                                   extra={"method": method, "route": route, "status": status,
                                          "duration_ms": duration_ms, "request_id": request_id})
    record.created, record.msecs = created, (created - int(created)) * 1000 // 1
    return record


class _AccessLines(logging.Handler):
    """Writes the access lines noted by `log_access`, from a thread of its own, every
    `ACCESS_FLUSH_SECONDS`.

    Making, formatting and writing one log record costs about as much CPU as everything
    else Bazar adds to a cached read (valgrind: 89,000 instructions for a text line, 130,000
    for JSON). On the request's thread that is added to the answer, or holds the interpreter
    lock while waitress sends it; here a request appends a tuple to a deque (thread-safe,
    well under a microsecond) and the lines are written in batches, in order, each with the
    time of its answer. A line reaches the log up to ACCESS_FLUSH_SECONDS late, possibly
    after lines logged meanwhile; one wake-up per interval, not one per request.

    It is a logging.Handler (attached to no logger) only so that `logging.shutdown()`
    flushes it before the stream handler (newest first): logging calls that at exit, and
    `consensus.storage.fatal_io_error` before its `os._exit`, so no line is lost when a
    process stops (SIGTERM, Ctrl-C, a fatal I/O error). A SIGKILL loses what is pending.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: collections.deque[tuple] = collections.deque()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def add(self, line: tuple) -> None:
        self.pending.append(line)

    def _run(self) -> None:
        while not self._stopped.wait(ACCESS_FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        with self.lock:  # one writer at a time, so lines keep their order
            while self.pending:
                access_log.handle(_access_record(*self.pending.popleft()))

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()


# -- formats ----------------------------------------------------------------------

class _Context(logging.Filter):
    """Stamps every record with this process's node id and the current request id."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        if not hasattr(record, "request_id"):  # an access line names its request itself
            record.request_id = _REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """`<time> <node> <level> <logger>: <message>`, then `request_id=<id>` on a request's lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(node)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} request_id={request_id}" if request_id else line


# json.dumps with any option builds a new encoder for every call: one, made once, is cheaper.
_JSON = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, node, logger, msg, request_id
    (on a request's lines), the access fields on access lines, exc on an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
                 .isoformat(timespec="milliseconds"),
                 "level": record.levelname, "node": getattr(record, "node", None),
                 "logger": record.name, "msg": record.getMessage()}
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _JSON.encode(entry)


def setup(node: str) -> None:
    """Log to stderr as process `node`, in the format `$BAZAR_LOG_FORMAT` names (text or
    json) at `$BAZAR_LOG_LEVEL` (INFO by default)."""
    # Bazar's lines never show the caller's file and line, thread or process, so logging need
    # not look them up for every record (the logging HOWTO's "Optimization"): a line per
    # request is on every request's path.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.addFilter(_Context(node))
    handler.setFormatter(JsonFormatter() if os.environ.get(FORMAT_ENV, "text") == "json" else TextFormatter())
    logging.basicConfig(level=os.environ.get(LEVEL_ENV, "INFO"), handlers=[handler], force=True)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    global _writer
    if _writer is None:  # made after the stream handler, so logging.shutdown() flushes it first
        _writer = _AccessLines()
