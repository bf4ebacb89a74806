"""A peer connection's byte stream: optional RC4 both ways, a byte budget, and deadlines on every read.

Writes are held until the next wait (a read, a drain, a close) and leave in one send: on loopback and LAN
links each send costs the kernel's whole delivery in our event loop, and a probe's messages come in bursts
(handshake, have-none and extension handshake; a pipeline of requests).

Reads return what arrived (never wait for a length the peer chose), so a huge announced length cannot
make us buffer or block; the codec rejects it first. Every wait is bounded by the phase deadline and by
the idle timeout, whichever comes first, so a slowloris peer ends at the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib

from tracker_watch.domain.mse import RC4
from tracker_watch.swarm.wire.errors import DeadlinePassed, ProbeFailure, Reason

CHUNK = 64 * 1024


class WireStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_bytes: int,
                 idle: float, encrypt: RC4 | None = None, decrypt: RC4 | None = None, pending: bytes = b"",
                 bytes_in: int = 0, unsent: list[bytes] | None = None) -> None:
        self.reader, self.writer = reader, writer
        self._unsent: list[bytes] = unsent if unsent is not None else []  # written, not yet handed to the socket
        self.max_bytes, self.idle = max_bytes, idle
        self.encrypt, self.decrypt = encrypt, decrypt
        self._buf = bytearray(pending)  # already decrypted
        self.bytes_in = bytes_in        # raw bytes read from the socket, handshakes included
        self.bytes_out = 0

    def switched(self, *, pending: bytes, encrypt: RC4 | None = None, decrypt: RC4 | None = None) -> WireStream:
        """The same connection after an encryption handshake: new ciphers, `pending` (clear) read first."""
        stream = WireStream(self.reader, self.writer, max_bytes=self.max_bytes, idle=self.idle, encrypt=encrypt,
                            decrypt=decrypt, pending=pending, bytes_in=self.bytes_in, unsent=self._unsent)
        self._unsent = []
        stream.bytes_out = self.bytes_out
        return stream

    @property
    def encrypted(self) -> bool:
        return self.encrypt is not None

    async def read_raw(self, deadline: float, phase: str) -> bytes:
        """Whatever the socket has (up to 64 KiB), before the deadline; EOF raises CLOSED."""
        self.flush()  # what we wrote may be what the peer waits for
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise DeadlinePassed(Reason.TIMEOUT, f"{phase}: deadline passed")
        wait = min(remaining, self.idle)
        try:
            # never read more than one byte past the budget
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a read that completes as the probe's
            # own total deadline cancels it and swallows that cancellation, so a peer dribbling bytes every few
            # ms could outlive `total` (seen in CI: a slowloris ended at the 60 s phase deadline, not at 1 s)
            async with asyncio.timeout(wait):
                data = await self.reader.read(min(CHUNK, self.max_bytes - self.bytes_in + 1))
        except TimeoutError:
            if wait == remaining:
                raise DeadlinePassed(Reason.TIMEOUT, f"{phase}: deadline passed") from None
            raise ProbeFailure(Reason.TIMEOUT, f"{phase}: peer silent for {self.idle:g} s") from None
        except ConnectionError as e:
            raise ProbeFailure(Reason.CLOSED, f"{phase}: {e.__class__.__name__}") from None
        if not data:
            raise ProbeFailure(Reason.CLOSED, f"{phase}: peer closed the connection")
        self.bytes_in += len(data)
        if self.bytes_in > self.max_bytes:
            raise ProbeFailure(Reason.TOO_MUCH_DATA, f"{phase}: more than {self.max_bytes} bytes received")
        return data

    async def read_some(self, deadline: float, phase: str) -> bytes:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            return data
        data = await self.read_raw(deadline, phase)
        return self.decrypt.update(data) if self.decrypt is not None else data

    async def read_exactly(self, n: int, deadline: float, phase: str) -> bytes:
        while len(self._buf) < n:
            self._buf += await self.read_some(deadline, phase)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def write(self, data: bytes) -> None:
        """Queue `data` (encrypted now, so the cipher's order is the write order); it leaves at the next wait."""
        self.bytes_out += len(data)
        self._unsent.append(self.encrypt.update(data) if self.encrypt is not None else data)

    def flush(self) -> None:
        """Hand everything written so far to the socket, in one send."""
        if self._unsent:
            data = self._unsent[0] if len(self._unsent) == 1 else b"".join(self._unsent)
            self._unsent = []
            self.writer.write(data)

    async def drain(self, deadline: float, phase: str) -> None:
        self.flush()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(remaining, 0.001)):  # not wait_for: see read_raw
                await self.writer.drain()
        except TimeoutError:
            raise ProbeFailure(Reason.TIMEOUT, f"{phase}: peer does not read") from None
        except ConnectionError as e:
            raise ProbeFailure(Reason.CLOSED, f"{phase}: {e.__class__.__name__}") from None

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):  # a reset peer: nothing left to say
            self.flush()
        self.writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
