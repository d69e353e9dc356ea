"""The SSRF guard: where a webhook may be sent.

A webhook URL is user input that makes our workers open connections, so a destination is checked
after DNS resolution, and the checked address is the one connected to: a name that resolves to a
public address for the check and to 169.254.169.254 a moment later (DNS rebinding) never gets a
second lookup. Every address a name resolves to must pass; the first one is used.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import DestinationRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
DNS_TIMEOUT_S = 5.0


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo client, NAT64), which is where a
    connection to it may really end up."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def category(addr: Address) -> str | None:
    """Why an address is not a public destination, or None if it is one."""
    if isinstance(addr, ipaddress.IPv6Address):
        inner = embedded_ipv4(addr)
        if inner is not None:
            why = category(inner)
            return f"{why} (inside {addr})" if why else None
        if addr.is_site_local:
            return "site-local"
    if addr.is_loopback:
        return "loopback"
    if addr.is_unspecified:
        return "unspecified (this host)"
    if addr.is_link_local:
        return "link-local (cloud metadata)"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        return "carrier-grade NAT"
    if isinstance(addr, ipaddress.IPv6Address) and addr in ipaddress.ip_network("fc00::/7"):
        return "unique local (ULA)"
    if addr.is_private:
        return "private"
    if addr.is_multicast or addr.is_reserved or not addr.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class Destination:
    """A checked destination: connect to `address`, present `host` (Host header, TLS SNI)."""

    scheme: str
    host: str
    port: int
    address: Address
    path: str

    @property
    def connect_url(self) -> str:
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Guard:
    allow_private: bool = False
    allow_networks: tuple[Network, ...] = field(default_factory=tuple)
    ports: tuple[int, ...] = (80, 443, 8080, 8443)

    @classmethod
    def from_settings(cls, allow_private: bool, networks: list[str], ports: list[int] | None = None) -> Guard:
        nets = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        return cls(allow_private, nets, tuple(ports) if ports else cls.ports)

    def _allowed_network(self, addr: Address) -> bool:
        plain = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped else addr
        return any(plain in net for net in self.allow_networks)

    def refusal(self, addr: Address, port: int | None = None) -> str | None:
        """Why `addr` (and `port`) may not be called, or None. Networks the operator allowed are
        trusted with any port; public addresses get the web's ports only, so a webhook URL cannot
        probe a host's other services."""
        if self.allow_private or self._allowed_network(addr):
            return None
        why = category(addr)
        if why is not None:
            return why
        if port is not None and port not in self.ports:
            return f"port {port}, not one of {', '.join(map(str, self.ports))} (PIPELINE_WEBHOOK_PORTS)"
        return None

    def check_url(self, url: str) -> tuple[str, str, int, str]:
        """Syntax only: scheme, host, port, path+query. No lookup."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DestinationRefused(f"{url!r}: only http and https webhook URLs are allowed")
        if not parts.hostname:
            raise DestinationRefused(f"{url!r}: no host")
        if parts.username or parts.password:
            raise DestinationRefused(f"{url!r}: credentials in webhook URLs are not allowed")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise DestinationRefused(f"{url!r}: bad port") from exc
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        return parts.scheme, parts.hostname, port, path

    def resolve(self, url: str) -> Destination:
        """Resolve `url` and check every address; raises DestinationRefused naming the reason."""
        scheme, host, port, path = self.check_url(url)
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            infos = _lookup(url, host, port)
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise DestinationRefused(f"{url}: {host} resolves to no address")
        for addr in addresses:
            why = self.refusal(addr, port)
            if why is not None:
                shown = host if literal is not None else f"{host} resolves to {addr}, which"
                raise DestinationRefused(
                    f"{url}: refused, {shown} is {why}; "
                    "allow it with PIPELINE_WEBHOOK_ALLOW_NETWORKS if it is meant to be reachable"
                )
        return Destination(scheme, host, port, addresses[0], path)


def _lookup(url: str, host: str, port: int) -> list[Any]:
    """getaddrinfo with a deadline (it has none of its own): a slow resolver must not hold a
    delivery thread. The look-up runs in a daemon thread, so one still hanging never holds up the
    process's exit either."""
    done = threading.Event()
    outcome: list[Any] = []

    def look_up() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            outcome.append(exc)
        done.set()

    threading.Thread(target=look_up, name="webhook-dns", daemon=True).start()
    if not done.wait(DNS_TIMEOUT_S):
        raise DestinationRefused(f"{url}: looking up {host} took over {DNS_TIMEOUT_S:g}s")
    if isinstance(outcome[0], OSError):
        raise DestinationRefused(f"{url}: cannot resolve {host}: {outcome[0]}") from outcome[0]
    return list(outcome[0])
