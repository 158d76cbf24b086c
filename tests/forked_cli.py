"""The CLI as a real process forked from a warm server, for tests that kill runs by the dozen.

A fault test needs a separate process (it is SIGKILLed, holds the lock, exits with its own
code), not a fresh interpreter: a fresh ``infergate-billing`` spends ~0.5 s importing and
~1.1 s building the two tokenizers before the run under test starts, and the kill tests start
about fifty of them. Here one server process per test process imports the CLI, builds the
tokenizers and imports the renderer once, then forks a child per command: the child runs the
same entry point (:func:`pipeline.cli.main`) with the given argv, environment and working
directory, on the test's own file descriptors, and exits with the CLI's exit code.

Fork safety: the server never opens a database, renders or counts text, so it has one thread
when it forks (checked before every fork); the child starts DuckDB's threads itself.

What stays a fresh interpreter: tests whose subject is the installed command (tests/test_cli.py,
the start-up checks, the pseudo-terminal tests) and those that inspect a run's render workers
by their command line (tests/faults/test_statements_faults.py).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent

# --- the server (runs in its own interpreter: ``python -m tests.forked_cli FD``) ---------------


def _warm() -> None:
    """Import what a run imports and build what every recounting run builds, once."""
    import pipeline.cli  # noqa: F401
    import pipeline.jobs  # noqa: F401
    import pipeline.reference  # noqa: F401  (pydantic: a run whose reference files changed)
    import pipeline.statements  # noqa: F401
    import reports.pdf  # noqa: F401  (WeasyPrint)
    from pipeline import recount

    for name in ("o200k_base", "deepseek_v4"):
        recount._counter(name)  # the process-wide counters a recount uses: inherited by each child


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the command and exit with its code (never returns)."""
    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = ["infergate-billing", *request["argv"]]
        from pipeline.cli import main

        try:
            main()
            code = 0
        except SystemExit as done:
            if done.code is None:
                code = 0
            elif isinstance(done.code, int):
                code = done.code
            else:
                print(done.code, file=sys.stderr)
                code = 1
    except BaseException:  # the child must never return into the server loop
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110  (a closed pipe: nothing left to say)
                pass
        os._exit(code)


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _serve(sock: socket.socket) -> None:
    _warm()
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        if not message:
            return
        request = json.loads(message)
        if request["op"] == "spawn":
            threads = _threads()
            if threads != 1:
                reply: dict[str, Any] = {"error": f"the fork server has {threads} threads: forking is unsafe"}
            else:
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    sock.close()
                    _child(request, fds)
                reply = {"pid": pid}
            for fd in fds:
                os.close(fd)
        else:  # wait
            deadline = None if request["timeout"] is None else time.monotonic() + request["timeout"]
            reply = {"returncode": None}
            while True:
                pid, status = os.waitpid(request["pid"], os.WNOHANG)
                if pid:
                    reply = {"returncode": _returncode(status)}
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(0.002)
        sock.sendall(json.dumps(reply).encode() + b"\n")


# --- the client (in the test process) -------------------------------------------------------


class _Server:
    """One fork server per test process, started on first use."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.sock = ours
        self.reader = ours.makefile("rb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.forked_cli", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        atexit.register(self.close)

    def ask(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        socket.send_fds(self.sock, [json.dumps(request).encode()], list(fds))
        line = self.reader.readline()
        if not line:
            raise RuntimeError(f"the CLI fork server died (exit {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


_SERVER: _Server | None = None


def _server() -> _Server:
    global _SERVER
    if _SERVER is None or _SERVER.proc.poll() is not None:
        _SERVER = _Server()
    return _SERVER


class ForkedCLI:
    """A running CLI command: the part of :class:`subprocess.Popen` the fault tests use.

    ``stdout``/``stderr`` are read after the command ends (temporary files, so a chatty
    command can never block on a full pipe)."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path = ROOT) -> None:
        self._out: IO[bytes] = tempfile.TemporaryFile()
        self._err: IO[bytes] = tempfile.TemporaryFile()
        with open(os.devnull, "rb") as stdin:
            request = {
                "op": "spawn",
                "argv": list(argv),
                "env": {**os.environ, **(env or {})},
                "cwd": str(cwd),
            }
            self.pid: int = _server().ask(request, [stdin.fileno(), self._out.fileno(), self._err.fileno()])["pid"]
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = _server().ask({"op": "wait", "pid": self.pid, "timeout": timeout})["returncode"]
            if code is None:
                raise subprocess.TimeoutExpired(["infergate-billing"], timeout or 0)
            self.returncode = code
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def output(self) -> tuple[bytes, bytes]:
        """What the command wrote to stdout and stderr (call after it ended)."""
        found = []
        for stream in (self._out, self._err):
            stream.seek(0)
            found.append(stream.read())
            stream.close()
        return found[0], found[1]


def run_cli(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path = ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([CLI, *argv], capture_output=True, text=True)``, forked from the server."""
    done = run_cli_bytes(argv, env=env, cwd=cwd, timeout=timeout)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def run_cli_bytes(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path = ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    """:func:`run_cli` with stdout and stderr as the bytes written."""
    proc = ForkedCLI(argv, env=env, cwd=cwd)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    out, err = proc.output()
    return subprocess.CompletedProcess(["infergate-billing", *argv], proc.returncode or 0, out, err)


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
