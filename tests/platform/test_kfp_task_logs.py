"""A failed kfp.local run names the failing task's own error, even when branches interleave."""

import io
import threading

from klinecast.platform.kfp.task_logs import TaskLogs, last_error

TRACEBACK = """    Traceback (most recent call last):
      File "/tmp/x/ephemeral_component.py", line 31, in evaluate
        raise KlinecastError("cannot count the evaluations of 2021-06 ETHUSDT: locked")
        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    klinecast.errors.KlinecastError: cannot count the evaluations of 2021-06 ETHUSDT: locked
"""


def test_the_last_exception_of_a_task_output_is_its_error():
    assert last_error("noise\n" + TRACEBACK) == (
        "klinecast.errors.KlinecastError: cannot count the evaluations of 2021-06 ETHUSDT: locked"
    )
    assert last_error("a\n\nb\n") == "a | b"  # no traceback: the last lines


def test_two_branches_interleaved_keep_their_own_lines():
    import queue

    sink = io.StringIO()
    logs = TaskLogs(sink)
    inbox = {"tune-worker": queue.Queue(), "evaluate": queue.Queue()}
    done = queue.Queue()

    def branch(task: str) -> None:  # a thread that prints what it is told, when it is told
        while (line := inbox[task].get()) is not None:
            print(line, file=logs)
            done.put(task)

    def script(task: str, body: str, status: str) -> list[str]:
        return [
            f"12:00 - INFO - Executing task \x1b[96m'{task}'\x1b[0m",
            *body.splitlines(),
            f"12:01 - INFO - Task \x1b[96m'{task}'\x1b[0m finished with status {status}",
        ]

    healthy = script("tune-worker", "    fine\n" * 5, "SUCCESS")
    failing = script("evaluate", TRACEBACK, "FAILURE")
    threads = [threading.Thread(target=branch, args=(task,)) for task in inbox]
    for thread in threads:
        thread.start()
    for one, two in zip(healthy, failing, strict=True):  # the branches' lines alternate
        for task, line in (("tune-worker", one), ("evaluate", two)):
            inbox[task].put(line)
            done.get(timeout=10)
    for task in inbox:
        inbox[task].put(None)
    for thread in threads:
        thread.join()
    (failure,) = logs.failures()
    assert failure.task == "evaluate"
    assert failure.error == (
        "klinecast.errors.KlinecastError: cannot count the evaluations of 2021-06 ETHUSDT: locked"
    )
    assert sink.getvalue().count("fine") == 5  # everything still reaches the real stdout
