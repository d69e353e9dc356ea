"""Two workers on two "hosts": each in a network namespace of its own (its own interfaces, reached
over a veth pair and a bridge, and its own hostname), serving different functions, sharing one Redis
and one S3 peer that listen on the bridge. Stopping one host makes only its functions wait; starting
it again drains the backlog; nothing is lost and nothing runs twice.

Needs root for `ip netns` (CI runs as root); it uses 198.18.0.0/15, the range set aside for tests
(RFC 2544), on interfaces that exist only for the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from pipeline.embedded import redis_server_binary
from pipeline.invocation import Status
from pipeline.measure.samples import make_photo
from pipeline.runtime import Runtime
from pipeline.uploads import upload_file
from tests.helpers import Proc, free_port, need, pipeline_env, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

SUBNET = "198.18.231"
SERVICES = f"{SUBNET}.1"  # the bridge: Redis and the S3 peer listen here
CONFIG = """
version: 1
buckets: [media]
rules:
  - name: images
    bucket: media
    prefix: uploads/
    content_types: ["image/*"]
    functions:
      - function: thumbnail
        params: {sizes: [64]}
      - function: copy
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Network:
    bridge: str
    hosts: dict[str, str]  # hostname -> namespace

    def prefix(self, hostname: str) -> list[str]:
        """Run a command inside the host's namespace under its own hostname."""
        script = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.hosts[hostname], "unshare", "--uts", "sh", "-c", script, hostname]


@pytest.fixture
def network() -> Iterator[Network]:
    need(
        os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "unshare")),
        "network namespaces need root, ip and unshare",
    )
    tag = str(os.getpid() % 100_000)
    net = Network(bridge=f"plbr{tag}", hosts={"host-a": f"pl{tag}a", "host-b": f"pl{tag}b"})
    try:
        ip("link", "add", net.bridge, "type", "bridge")
        ip("addr", "add", f"{SERVICES}/24", "dev", net.bridge)
        ip("link", "set", net.bridge, "up")
        for n, ns in enumerate(net.hosts.values(), start=2):
            outside, inside = f"{ns}o", f"{ns}i"
            ip("netns", "add", ns)
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", ns)
            ip("link", "set", outside, "master", net.bridge)
            ip("link", "set", outside, "up")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{n}/24", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield net
    finally:
        for ns in net.hosts.values():
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", net.bridge], check=False, capture_output=True)


@pytest.fixture
def shared_redis(network: Network, tmp_path: Path) -> Iterator[str]:
    """A Redis of the test's own, listening on the bridge only."""
    port = free_port()
    server = subprocess.Popen(
        [redis_server_binary(), "--bind", SERVICES, "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://{SERVICES}:{port}/0"
    try:
        wait_until(lambda: _pings(url), 10, "the shared Redis")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def shared_s3(network: Network) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=SERVICES, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_two_hosts_serve_their_own_functions_and_a_stopped_one_only_delays_its_own(
    network: Network, shared_redis: str, shared_s3: str, tmp_path: Path
) -> None:
    runtime, _ = pipeline_runtime(
        CONFIG,
        shared_redis,
        tmp_path,
        s3_endpoint=shared_s3,
        s3_access_key="test",
        s3_secret_key=SecretStr("test"),
        s3_region="us-east-1",
    )
    s3 = dict(
        PIPELINE_S3_ENDPOINT=shared_s3,
        PIPELINE_S3_ACCESS_KEY="test",
        PIPELINE_S3_SECRET_KEY="test",
        PIPELINE_S3_REGION="us-east-1",
    )
    photo = make_photo(tmp_path / "photo.jpg", 640, 480)

    def host_env(name: str) -> dict[str, str]:
        # Each host has its own data dir, as separate machines would; only Redis and S3 are shared.
        return pipeline_env(
            PIPELINE_REDIS_URL=shared_redis,
            PIPELINE_CONFIG=str(tmp_path / "pipeline.yaml"),
            PIPELINE_DATA_DIR=str(tmp_path / name),
            **s3,
        )

    def start(hostname: str, function: str, log: str) -> Proc:
        args = ["worker", "--functions", function, "--concurrency", "1"]
        return Proc(args, host_env(hostname), tmp_path / log, prefix=network.prefix(hostname))

    def upload(names: list[str]) -> dict[str, list[str]]:
        return {n: upload_file(runtime, photo, "media", f"uploads/{n}.jpg").invocation_ids for n in names}

    def on(hostname: str) -> bool:
        return any(w.hostname.endswith(f"@{hostname}") for w in runtime.ledger.workers.live())

    a = start("host-a", "thumbnail", "a.log")
    b = start("host-b", "copy", "b1.log")
    b_again: Proc | None = None
    try:
        wait_until(lambda: on("host-a") and on("host-b"), 60, "a worker on each host")
        # The hosts really are apart: host-a's namespace cannot reach this namespace's loopback.
        probe = subprocess.run(
            [*network.prefix("host-a"), "python3", "-c", _CONNECT.format(port=_loopback_port())],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert probe.stdout.strip() == "refused or unreachable", probe.stdout + probe.stderr

        first = upload(["one", "two", "three"])
        ids = [i for group in first.values() for i in group]
        wait_until(lambda: _all(runtime, ids, Status.SUCCEEDED), 60, "the first uploads on both hosts")
        for inv in runtime.ledger.invocations.get_many(ids):
            expected = "host-a" if inv.function == "thumbnail" else "host-b"
            assert str(inv.worker).endswith(f"@{expected}"), f"{inv.function} ran on {inv.worker}"

        # host-b goes away: thumbnails go on, copies wait in their queue.
        assert b.stop() == 0, b.output()[-3000:]
        assert not on("host-b"), "a stopped worker leaves the worker list"
        second = upload(["four", "five", "six"])
        invs = {
            inv.id: inv for inv in runtime.ledger.invocations.get_many(i for g in second.values() for i in g)
        }
        thumbs = [i for i, inv in invs.items() if inv.function == "thumbnail"]
        copies = [i for i, inv in invs.items() if inv.function == "copy"]
        wait_until(lambda: _all(runtime, thumbs, Status.SUCCEEDED), 60, "thumbnails while host-b is down")
        # No live worker takes from fn.copy, so nothing can take its messages: no need to wait.
        assert not any("fn.copy" in w.queues for w in runtime.ledger.workers.live())
        assert _all(runtime, copies, Status.QUEUED)
        assert runtime.dispatcher.depth("fn.copy") == 3 and runtime.dispatcher.depth("fn.thumbnail") == 0

        # host-b comes back and drains its backlog.
        b_again = start("host-b", "copy", "b2.log")
        wait_until(lambda: _all(runtime, copies, Status.SUCCEEDED), 60, "host-b to drain its queue")

        every = runtime.ledger.invocations.get_many([*ids, *invs])
        assert len(every) == 12 and {inv.status for inv in every} == {Status.SUCCEEDED}
        assert {inv.attempts for inv in every} == {1}, "nothing ran twice"
        keys = {o.key for inv in every for o in inv.outputs}
        stored = {o.key for o in runtime.store.list("media", "derived/")}
        assert len(keys) == 12 and keys == stored, "one output per invocation, all in the bucket"
    finally:
        assert a.stop() == 0, a.output()[-3000:]
        b.stop()
        if b_again is not None:
            assert b_again.stop() == 0, b_again.output()[-3000:]


_CONNECT = """
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    print("connected")
except OSError:
    print("refused or unreachable")
"""


def _loopback_port() -> int:
    """A port something listens on in this namespace's loopback (the machine's Redis, else ours)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 6379)) == 0:
            return 6379
    return 1


def _all(runtime: Runtime, ids: list[str], status: Status) -> bool:
    return all(inv.status == status for inv in runtime.ledger.invocations.get_many(ids))
