"""Cutting a client's TCP connection from under the web server, when nothing else can.

Hypercorn writes each response to the socket under a cancel shield: a response the client does
not read blocks its writer until the kernel takes the bytes, and no cancellation reaches it.
That left a request whose client stopped reading alive for as long as the client liked (and a
shutdown waiting on it forever). `shut_down_connections` finds the connection's socket among
the process's open descriptors and aborts it: `SO_LINGER` of zero, so that the kernel resets
the connection (RST) and discards what the client did not read instead of holding it (and a
FIN behind it) for as long as the client's window stays shut; then `shutdown(2)`, not
`close(2)`, so that the server's descriptor stays valid. The blocked write fails with EPIPE,
hypercorn treats the connection as closed by the client and closes it (the reset goes out
then): the request ends, and its Codex run with it.

Connections are recognised by their addresses, as the ASGI scope gives them (`client` and
`server`), so nothing here depends on the web server's internals. Linux only (`/proc`), like
the rest of the proxy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

Address = tuple[str, int]
#: `struct linger` {l_onoff=1, l_linger=0}: the last close resets the connection.
ABORT_ON_CLOSE = struct.pack("ii", 1, 0)


def shut_down_connections(matches: Callable[[Address, Address], bool]) -> int:
    """Shut down every connected TCP socket of this process for which `matches(local, peer)`
    is true; how many."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            # A duplicate, so that closing the Python object leaves the server's descriptor be.
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:  # closed meanwhile, or not a socket Python knows
            continue
        with sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6) \
                    or sock.type != socket.SOCK_STREAM:
                continue
            try:
                local, peer = sock.getsockname(), sock.getpeername()
            except OSError:  # a listening socket has no peer
                continue
            if matches((local[0], local[1]), (peer[0], peer[1])):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT_ON_CLOSE)
                    sock.shutdown(socket.SHUT_RDWR)
                    count += 1
    return count


def drop_client(server: Address | None, client: Address | None) -> bool:
    """Shut down the one connection between `server` and `client` (the ASGI scope's)."""
    if server is None or client is None:
        return False
    server, client = (server[0], server[1]), (client[0], client[1])
    return shut_down_connections(
        lambda local, peer: local == server and peer == client) > 0


def drop_all_clients(listening: list[Address]) -> int:
    """Shut down every connection accepted on one of the `listening` addresses."""
    ports = {port for _, port in listening}
    hosts = {host for host, _ in listening}
    return shut_down_connections(
        lambda local, _peer: local[1] in ports and (local[0] in hosts or bool(
            hosts & {"0.0.0.0", "::"})))
