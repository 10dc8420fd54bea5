"""A command run on a pseudo-terminal, as a user at a terminal runs it."""
from __future__ import annotations

import os
import pty
import select
import time

import pytest


def run_in_pty(argv: list[str], timeout: float, unset: tuple[str, ...] = (),
               env: dict | None = None, answer: tuple[str, str] | None = None
               ) -> tuple[str, int]:
    """Run argv with a pseudo-terminal as its stdin and stdout (the environment without
    `unset`, with `env`); `answer` = (question, text): type text once question has
    appeared. Returns everything it printed and its exit status."""
    pid, fd = pty.fork()
    if pid == 0:
        base = {k: v for k, v in os.environ.items() if k not in unset}
        os.execvpe(argv[0], argv, {**base, **(env or {}), "COLUMNS": "160", "TERM": "xterm"})
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:   # the child closed the terminal: it has exited
                break
            if not data:
                break
            chunks.append(data)
            if answer and answer[0] in b"".join(chunks).decode(errors="replace"):
                os.write(fd, answer[1].encode())
                answer = None
        else:
            os.kill(pid, 9)
            pytest.fail("the command did not finish in time:\n"
                        + b"".join(chunks).decode(errors="replace")[-3000:])
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return b"".join(chunks).decode(errors="replace"), os.waitstatus_to_exitcode(status)
