"""A real ClamAV daemon for tests, with a signature database of our own that matches the EICAR test
string: no signature download, nothing from the outside world."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import need, wait_until

# The EICAR anti-malware test file, kept in two halves so no scanner flags this source file itself.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$" + rb"EICAR-STANDARD-ANTIVIRUS-" + rb"TEST-FILE!$H+H*"
SIGNATURE = "Pipeline.Test.EICAR"
# clamd reports a signature from a database it did not ship with this suffix.
FOUND = f"{SIGNATURE}.UNOFFICIAL"


@contextlib.contextmanager
def running_clamd() -> Iterator[str]:
    """Start clamd on a Unix socket; yields its address for `screening.clamd`."""
    binary = shutil.which("clamd") or "/usr/sbin/clamd"
    need(Path(binary).exists(), "clamd is not installed (apt-get install clamav-daemon)")
    # A short directory: a Unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="clamd-") as tmp:
        home = Path(tmp)
        (home / "db").mkdir()
        body = b"EICAR-STANDARD-ANTIVIRUS-" + b"TEST-FILE"
        (home / "db" / "pipeline-test.ndb").write_text(f"{SIGNATURE}:0:*:{body.hex()}\n")
        socket = home / "clamd.sock"
        (home / "clamd.conf").write_text(
            f"LocalSocket {socket}\nDatabaseDirectory {home / 'db'}\nForeground yes\n"
            f"LogFile {home / 'clamd.log'}\nStreamMaxLength 50M\n"
        )
        proc = subprocess.Popen(
            [binary, "-c", str(home / "clamd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_until(lambda: socket.exists() or proc.poll() is not None, 60, "clamd to listen")
            log = home / "clamd.log"
            assert proc.poll() is None, log.read_text() if log.exists() else "clamd exited"
            yield f"unix://{socket}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
