"""Child processes of a local deployment: each in its own process group, logging to a file, always stopped."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dphe_bench.errors import DpheError

STOP_TIMEOUT_S = 10.0


class DeploymentError(DpheError, RuntimeError):
    """A process of the deployment failed to start, died, or the run did not finish (see its log)."""


@dataclass
class Child:
    """A started process: its name, its ``Popen`` and the file its output goes to."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def running(self) -> bool:
        """Whether the process itself is still alive."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def died_error(self) -> DeploymentError:
        """The error to raise when this process ended unexpectedly."""
        return DeploymentError(
            f"{self.name} exited with status {self.process.returncode}; its log {self.log_path} ends with:\n"
            f"{self.log_tail()}"
        )


def start_child(name: str, argv: list[str], log_path: Path, env: dict[str, str], cwd: Path | None = None) -> Child:
    """Start ``argv`` in a new session (its own process group) with stdout and stderr going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise DeploymentError(f"cannot start {name} ({argv[0]}): {exc.strerror or exc}") from None
    return Child(name, process, log_path)


def kill_child(child: Child) -> None:
    """SIGKILL the child's whole process group at once (a crash, as far as its peers can tell)."""
    _signal_group(child, signal.SIGKILL)
    child.process.wait()


def stop_children(children: list[Child], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every child's process group at once, then SIGKILL whatever is left after ``timeout`` seconds."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    if not _wait_until_gone(children, timeout):
        for child in children:
            _signal_group(child, signal.SIGKILL)
        _wait_until_gone(children, timeout)
    for child in children:
        child.process.wait()


def _wait_until_gone(children: list[Child], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for every child's process group to vanish; whether they all did."""
    deadline = time.monotonic() + timeout
    while any(_group_alive(child) for child in children):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _signal_group(child: Child, signum: int) -> None:
    # The child is its group's leader (start_new_session), so the group id is its pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signum)


def _group_alive(child: Child) -> bool:
    child.process.poll()  # reap the leader once it exits, so that its group can vanish
    try:
        os.killpg(child.process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now (the OS picks them)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for_port(child: Child, host: str, port: int, timeout: float) -> None:
    """Wait until ``host:port`` accepts connections; raise if ``child`` dies or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        if not child.running():
            raise child.died_error()
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"{child.name} did not listen on {host}:{port} within {timeout} s; see {child.log_path}"
                ) from None
            time.sleep(0.2)
