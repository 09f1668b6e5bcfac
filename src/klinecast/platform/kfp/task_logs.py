"""Each kfp.local task's own output, so that a failed local run names the failing step's error.

kfp.local runs a ParallelFor's iterations on threads, and every task prints its subprocess's
output line by line to one stdout: two branches' lines interleave, and the pipeline's error
says only which task failed ("Inner task failed: 'evaluate' inside 'for-loop-1-iteration-1'").
`TaskLogs` stands in for sys.stdout during a run. It passes every write through, and keeps a
thread's lines since its latest "Executing task" line; when that task ends in FAILURE, it keeps
them as the task's log, whose last exception `failures()` reports.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass

_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FAILED = re.compile(r"Task '([^']+)' finished with status FAILURE")
#: How many lines of a failed task's output the error carries at most.
TAIL_LINES = 12


@dataclass(frozen=True)
class TaskFailure:
    task: str
    #: the task's last exception (its type and message), else the last lines it printed
    error: str

    def __str__(self) -> str:
        return f"task '{self.task}': {self.error}"


class TaskLogs:
    """A stdout that also keeps each thread's current task's lines (`failures` after a run)."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stdout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._failures: list[TaskFailure] = []

    def write(self, text: str) -> int:
        self._stream.write(text)
        plain = without_colour(text)
        lines = getattr(self._local, "lines", None)
        started = _STARTED.search(plain)
        if started or lines is None:
            self._local.lines = lines = []
        lines.append(plain)
        failed = _FAILED.search(plain)
        if failed:
            with self._lock:
                self._failures.append(TaskFailure(failed.group(1), last_error("".join(lines))))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name):  # isatty, encoding, fileno: the real stream's
        return getattr(self._stream, name)

    def failures(self) -> list[TaskFailure]:
        with self._lock:
            return list(self._failures)


def without_colour(text: str) -> str:
    """text without the ANSI colour codes kfp.local puts around names."""
    return _COLOUR.sub("", text)


def last_error(output: str) -> str:
    """The last exception a task's output shows (what follows its traceback's last frame), else
    its last non-empty lines."""
    lines = [line.strip() for line in output.splitlines()]
    lines = [line for line in lines if line and not _FAILED.search(line)]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call")]
    if starts:
        after = lines[starts[-1] + 1 :]
        frames = [i for i, line in enumerate(after) if line.startswith('File "')]
        # a frame is its File line and the source line under it (and any ^^^ marks)
        message = after[frames[-1] + 1 :] if frames else after
        message = [line for line in message[1:] if set(line) - set("^~ ")] or message
        return " ".join(message[-TAIL_LINES:])
    return " | ".join(lines[-TAIL_LINES:]) or "(it printed nothing)"
