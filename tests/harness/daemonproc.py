"""Process and log plumbing shared by the test daemon harnesses
(``slurmcluster.Cluster``: slurmctld + slurmd, ``slurmdbd.SlurmDBD``:
mariadbd + slurmdbd).

Daemons run in the foreground in their own session, with stdout/stderr
appended to a file, and are only ever stopped by pid: the ``Popen`` we hold,
plus the descendants it had, recorded with their start times so that a
reused pid is never signalled.  Nothing here looks processes up by name.

Module functions are the building blocks; ``DaemonHarness`` is the small
base class both harnesses derive from (context manager, stop-at-exit
registry, spawning, waiting for a daemon / a log line, log tails).
"""

from __future__ import annotations

import atexit
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import weakref
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

# --------------------------------------------------------------------------
# ports and log files
# --------------------------------------------------------------------------


def free_ports(count: int = 1) -> tuple[int, ...]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free just now
    (all bound at the same time, so they differ; someone may still take
    them before the daemon binds: retry on "Address already in use")."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return tuple(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def tail(path: pathlib.Path, lines: int) -> str:
    """The last ``lines`` lines of a file (or a ``<path: error>`` note)."""
    try:
        data = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<{path}: {e}>"
    return "\n".join(data[-lines:])


def format_tails(parts: Iterable[tuple[str, pathlib.Path, int]]) -> str:
    """``----- label (tail) -----`` sections for the (label, path, lines)
    files that exist."""
    return "\n".join(f"----- {label} (tail) -----\n{tail(p, n)}"
                     for label, p, n in parts if p.exists())


def read_log(path: pathlib.Path, since: int = 0) -> str:
    """A log from byte offset ``since`` on ("" if it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def log_size(path: pathlib.Path) -> int:
    """Current size of a log (0 if it does not exist yet): an offset for
    ``read_log`` / ``wait_for_log(since=...)``."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------
# processes, by pid only
# --------------------------------------------------------------------------


def spawn(argv: Sequence[str], out: pathlib.Path, *, env: Mapping[str, str],
          cwd: pathlib.Path) -> subprocess.Popen:
    """Start ``argv`` in its own session (so no signal for our process
    group reaches it), stdin from /dev/null, stdout+stderr appended to
    ``out``."""
    with open(out, "ab") as fh:
        return subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True)


def is_running(proc: subprocess.Popen | None) -> bool:
    return proc is not None and proc.poll() is None


def pid_of(proc: subprocess.Popen | None) -> int | None:
    return proc.pid if proc else None


def pid_alive(pid: int) -> bool:
    """pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # state is the field after "(comm)"; Z = zombie = gone for us
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def snapshot(pids: Iterable[int]) -> dict[int, str]:
    """{pid: start time} for existing pids (to detect pid reuse)."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                out[pid] = f.read().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            pass
    return out


def survivors(snap: Mapping[int, str]) -> list[int]:
    """The pids of a ``snapshot`` that are still alive and still the same
    process (same start time)."""
    now = snapshot(snap)
    return sorted(p for p, st in snap.items()
                  if now.get(p) == st and pid_alive(p))


def descendants(roots: Iterable[int]) -> set[int]:
    """roots plus all their descendants (from /proc/*/stat ppids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


def kill_pids(pids: Iterable[int], timeout: float = 0.0) -> list[int]:
    """SIGKILL each pid (gone / not ours: ignored), then wait up to
    ``timeout`` s until they are gone.  Returns the pids not seen gone
    (with timeout 0, no waiting: all of them)."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    left = sorted(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if pid_alive(p)]
        if left:
            time.sleep(0.05)
    return left


def terminate(proc: subprocess.Popen | None, timeout: float, *,
              rescan_before_kill: bool = False) -> dict[int, str]:
    """Stop a daemon we spawned, by its pid: SIGTERM, wait up to ``timeout``
    s, then SIGKILL and reap.  Does nothing if ``proc`` is None or already
    exited.

    Returns a ``snapshot`` of the daemon's descendants taken before the
    SIGTERM -- or, with ``rescan_before_kill``, the one taken right before a
    SIGKILL if that finds any -- so that the caller can deal with what it
    left behind (see ``survivors``); {} if nothing was stopped."""
    if not is_running(proc):
        return {}
    tree = snapshot(descendants([proc.pid]) - {proc.pid})
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if rescan_before_kill:
            tree = snapshot(descendants([proc.pid]) - {proc.pid}) or tree
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    return tree


# --------------------------------------------------------------------------
# harness base class
# --------------------------------------------------------------------------

_H = TypeVar("_H", bound="DaemonHarness")


def _stop_all(live: "weakref.WeakSet[DaemonHarness]") -> None:
    for h in list(live):
        try:
            h.stop()
        except Exception:
            pass


class DaemonHarness:
    """Base for a harness owning daemons it spawned.

    Subclasses set ``error`` (the exception class their failures raise) and
    define ``start()``, ``stop()`` (which calls ``_forget()``) and
    ``log_tails()``.  An instance is a context manager (start on enter, stop
    on exit); every instance that spawned something and was not stopped is
    stopped at interpreter exit as a last resort, one registry per subclass,
    subclasses defined later first.
    """

    error: type[Exception] = RuntimeError

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._live = weakref.WeakSet()
        atexit.register(_stop_all, cls._live)

    # -------------------------------------------------------- lifecycle
    def __enter__(self: _H) -> _H:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _remember(self) -> None:
        """Have this instance stopped at exit unless stop() runs first."""
        self._live.add(self)

    def _forget(self) -> None:
        self._live.discard(self)

    def _spawn(self, argv: Sequence[str], out: pathlib.Path, *,
               env: Mapping[str, str], cwd: pathlib.Path
               ) -> subprocess.Popen:
        self._remember()
        return spawn(argv, out, env=env, cwd=cwd)

    def _await_daemon(self, proc: subprocess.Popen, name: str,
                      ready: Callable[[], object], timeout: float, *,
                      waiting_for: str = "answering") -> None:
        """Poll ``ready()`` every 0.1 s until it is true; raise ``error``
        (with the log tails) if ``proc`` exits first or after ``timeout``
        s."""
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise self.error(f"{name} exited with {proc.returncode}\n"
                                 + self.log_tails())
            if ready():
                return
            if time.monotonic() > deadline:
                raise self.error(f"{name} not {waiting_for} after "
                                 f"{timeout}s\n" + self.log_tails())
            time.sleep(0.1)

    # ------------------------------------------------------------- logs
    def _wait_for_log(self, path: pathlib.Path, label: str, pattern: str, *,
                      timeout: float, since: int = 0,
                      flags: int = re.MULTILINE) -> re.Match:
        """Wait until regex ``pattern`` matches the log at ``path`` (from
        byte ``since``); returns the match object.  ``label`` names the log
        in the error."""
        rx = re.compile(pattern, flags)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(read_log(path, since))
            if m:
                return m
            if time.monotonic() > deadline:
                raise self.error(f"pattern {pattern!r} not in {label} log "
                                 f"after {timeout}s\n" + self.log_tails())
            time.sleep(0.1)
