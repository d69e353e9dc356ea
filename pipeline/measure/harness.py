"""Starting and stopping the pipeline's own processes, for the tests and the benchmarks alike:
`python -m pipeline <command>` children with their output in a file, a gateway once it answers,
and bounded waits. One harness, so a test and the figure it backs start processes the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from pipeline.embedded import free_port


class WaitTimedOut(AssertionError):
    """A bounded wait ran out. An AssertionError, so a test reports it as the expectation it was."""


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate` until it is true, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise WaitTimedOut(f"timed out after {timeout}s waiting for {what}")


def pipeline_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any PIPELINE_ setting, plus `overrides`: a child sees
    only the settings it is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(overrides)
    return env


class ChildProcess:
    """A child process in a session of its own (so it and what it started can be killed
    together), its output captured to a file."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            list(argv), env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def interrupt(self, sig: int, timeout: float) -> int:
        """Send `sig` (Ctrl-C is SIGINT) and wait for the process to exit on its own."""
        self.popen.send_signal(sig)
        try:
            return int(self.popen.wait(timeout=timeout))
        finally:
            self.stop()

    def kill_group(self) -> None:
        """SIGKILL the process and everything in its session, with no chance to say goodbye."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, and SIGKILL to its session after `timeout`: a worker's warm shutdown first
        finishes the task in hand, which takes longer while other processes share the cores."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        if not self._log_file.closed:
            self._log_file.close()
        return int(self.popen.returncode)


class PipelineProcess(ChildProcess):
    """`python -m pipeline <args>`, as a user would start it."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, prefix: Sequence[str] = ()) -> None:
        """`prefix`: a command that runs the rest (e.g. `ip netns exec NAME`); it must exec it, so
        signals reach the pipeline process itself."""
        self.args = args
        super().__init__([*prefix, sys.executable, "-m", "pipeline", *args], env, log)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_gateway(
    env: dict[str, str], log: Path, *args: str, port: int | None = None, timeout: float = 60
) -> tuple[PipelineProcess, str]:
    """A `pipeline gateway` process on `port` (a free one by default; `args`: more options, e.g.
    `--workers 2`), once it answers /healthz; returns it and its base URL."""
    port = port or free_port()
    proc = PipelineProcess(["gateway", "--host", "127.0.0.1", "--port", str(port), *args], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/healthz") or not proc.alive(), timeout, "the gateway")
    except WaitTimedOut:
        proc.stop()
        raise
    if not proc.alive():
        proc.stop()
        raise WaitTimedOut(f"the gateway exited:\n{proc.output()[-3000:]}")
    return proc, url
