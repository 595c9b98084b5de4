"""Name lookups for probes: IP literals need none, names go to c-ares (aiodns), never to a thread pool.

The standard library's resolver runs getaddrinfo on the loop's small default thread pool, so a slow
name server makes every other lookup, and anything else on that pool, wait in line. c-ares runs each
lookup as its own query on the event loop: a name server that never answers holds up only the probes
that asked it, each until its own deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

import aiodns
import aiodns.error

from exporter.probes.failures import ResolveError


def ip_literal(host: str) -> bool:
    """Whether `host` is an IPv4 or IPv6 address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Resolver:
    """Resolves host names to addresses on the running loop; one per prober."""

    def __init__(self, nameservers: Sequence[str] | None = None) -> None:
        # None: the system's (resolv.conf and the hosts file). "IP" or "IP:PORT" entries otherwise.
        self._nameservers = list(nameservers) if nameservers else None
        self._resolver: aiodns.DNSResolver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _channel(self) -> aiodns.DNSResolver:
        loop = asyncio.get_running_loop()
        if self._resolver is None or self._loop is not loop:
            self._resolver = aiodns.DNSResolver(nameservers=self._nameservers, loop=loop)
            self._loop = loop
        return self._resolver

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of a host name in the resolver's order, duplicates dropped; raises ResolveError."""
        try:
            result = await self._channel().getaddrinfo(host, port=port, type=socket.SOCK_STREAM)
        except aiodns.error.DNSError as exc:
            text = exc.args[1] if len(exc.args) > 1 else str(exc)
            raise ResolveError(f"dns lookup of {host} failed: {str(text)[:1].lower()}{str(text)[1:]}") from None
        addresses = list(dict.fromkeys(_text(node.addr[0]) for node in result.nodes))
        if not addresses:
            raise ResolveError(f"dns lookup of {host} returned no address")
        return addresses

    async def aclose(self) -> None:
        """Close the c-ares channel; a later lookup opens a new one."""
        if self._resolver is not None:
            resolver, self._resolver = self._resolver, None
            await resolver.close()


def _text(address: bytes | str) -> str:
    return address.decode() if isinstance(address, bytes) else address
