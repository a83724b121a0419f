"""slurmpy_plugins._log in-process, with a stand-in for the C library:
print() from several threads at once (handlers run on worker threads)."""
from __future__ import annotations

import re
import sys
import threading

from slurmpy_plugins import _log


class FakeLib:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str, str]] = []

    def spm_log(self, level: int, prefix: bytes, line: bytes) -> None:
        self.lines.append((level, prefix.decode(), line.decode()))


def test_a_partial_line_is_not_joined_to_another_threads_line():
    lib = FakeLib()
    out = _log._LogWriter(lib, _log.INFO)
    out.write("first half of A, ")
    t = threading.Thread(target=lambda: out.write("B's whole line\n"))
    t.start()
    t.join()
    out.write("second half of A\n")
    assert [line for _, _, line in lib.lines] == [
        "B's whole line", "first half of A, second half of A"]


def test_flush_writes_only_the_calling_threads_partial_line():
    lib = FakeLib()
    out = _log._LogWriter(lib, _log.ERROR)
    out.write("A pending")
    t = threading.Thread(target=lambda: (out.write("B pending"), out.flush()))
    t.start()
    t.join()
    assert lib.lines == [(_log.ERROR, "slurmpy", "B pending")]
    out.flush()
    assert lib.lines[-1] == (_log.ERROR, "slurmpy", "A pending")


def test_threads_printing_at_once_never_mix_lines():
    lib = FakeLib()
    out = _log._LogWriter(lib, _log.INFO)
    n_threads, n_lines = 8, 300
    start = threading.Barrier(n_threads)

    def worker(k: int) -> None:
        start.wait()
        for i in range(n_lines):
            # as print() does: several writes per line
            print("thread", k, "line", i, "x" * (i % 7), file=out)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    got: dict[int, list[int]] = {k: [] for k in range(n_threads)}
    for _, _, line in lib.lines:
        m = re.fullmatch(r"thread (\d+) line (\d+) (x*)", line)
        assert m, "mixed line: %r" % line
        k, i = int(m.group(1)), int(m.group(2))
        assert len(m.group(3)) == i % 7, "mixed line: %r" % line
        got[k].append(i)
    assert got == {k: list(range(n_lines)) for k in range(n_threads)}
