"""``enjournal serve`` with one change, for an experiment: the listening socket that uvicorn
binds for ``--workers > 1`` is re-created with its real protocol number, so asyncio sets
TCP_NODELAY on accepted connections (as it already does with one worker).

uvicorn's ``Config.bind_socket`` makes ``socket.socket(family=...)``, whose ``proto`` is 0;
asyncio only sets TCP_NODELAY when ``proto == IPPROTO_TCP``.  Without it, a response written
as two segments (headers, then body) waits for the client's delayed ACK (about 40 ms on
Linux).  The benchmark runs this as the "2n" read configuration to show what the fix gains.
"""

import socket
import sys

import uvicorn.config

_bind_socket = uvicorn.config.Config.bind_socket


def _bind_socket_tcp(self):
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return socket.socket(fileno=sock.detach())  # proto read back from the kernel: 6
    return sock


uvicorn.config.Config.bind_socket = _bind_socket_tcp

if __name__ == "__main__":
    from enjournal.cli import main

    sys.exit(main())
