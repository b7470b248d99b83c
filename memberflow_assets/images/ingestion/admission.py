"""What the upload API holds at once: request bodies in flight and the bytes they buffer. No Dagster.

Every upload holds a slot from the moment its body starts arriving until it is answered, and memory
for its bytes: reserved in full when the request declares its Content-Length, else step by step as
the body arrives. Beyond the process's limits, or beyond one client's share of them (half), the API
answers 503 with Retry-After instead of buffering more — so 30 bodies that stall at 19 of 20 MB hold
at most the budget, not 600 MB, and one client cannot take the whole budget from the others.

Used from the API's event loop only (coroutines, one thread): no locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CLIENT_SHARE = 0.5  # of the slots and of the bytes, for any one client


class Overloaded(Exception):
    """No room for this upload now; `detail` says whose limit it reached."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass
class _Usage:
    bodies: int = 0
    bytes: int = 0


@dataclass
class Hold:
    """One upload's slot and the bytes reserved for it."""

    client: str
    bytes: int = 0
    released: bool = field(default=False, repr=False)


class Admission:
    def __init__(self, max_bodies: int, max_bytes: int):
        self.max_bodies, self.max_bytes = max_bodies, max_bytes
        self.client_bodies = max(1, int(max_bodies * CLIENT_SHARE))
        self.client_bytes = max(1, int(max_bytes * CLIENT_SHARE))
        self.total = _Usage()
        self._clients: dict[str, _Usage] = {}

    def admit(self, client: str) -> Hold:
        """A slot for one of `client`'s uploads; raises Overloaded when there is none."""
        usage = self._clients.get(client, _Usage())
        if usage.bodies >= self.client_bodies:
            raise Overloaded(f"this client already has {usage.bodies} uploads in progress, its most at once")
        if self.total.bodies >= self.max_bodies:
            raise Overloaded("the server is receiving as many uploads as it can at once")
        usage.bodies += 1
        self.total.bodies += 1
        self._clients[client] = usage
        return Hold(client)

    def reserve(self, hold: Hold, nbytes: int) -> None:
        """Room for `nbytes` more of this upload's body; raises Overloaded when there is none."""
        usage = self._clients[hold.client]
        if usage.bytes + nbytes > self.client_bytes:
            raise Overloaded("this client's uploads in progress already hold its share of the server's memory")
        if self.total.bytes + nbytes > self.max_bytes:
            raise Overloaded("the uploads in progress already hold all the memory the server gives them")
        usage.bytes += nbytes
        self.total.bytes += nbytes
        hold.bytes += nbytes

    def release(self, hold: Hold) -> None:
        if hold.released:
            return
        hold.released = True
        usage = self._clients[hold.client]
        usage.bodies -= 1
        usage.bytes -= hold.bytes
        self.total.bodies -= 1
        self.total.bytes -= hold.bytes
        if usage.bodies == 0:
            del self._clients[hold.client]
