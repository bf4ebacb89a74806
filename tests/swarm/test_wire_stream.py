"""WireStream over a real loopback TCP connection: writes wait for the next wait and leave in one send, a read
first sends what the peer may be waiting for, and a switch to encryption keeps the order of the bytes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from tracker_watch.domain.mse import RC4
from tracker_watch.swarm.wire.stream import WireStream

IP = "127.0.0.121"


@dataclass
class Pair:
    stream: WireStream
    peer: socket.socket  # the other end, non-blocking: a recv shows what has arrived, now
    sends: list[int]     # the length of each send the stream's transport was handed


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    listener = socket.create_server((IP, 0))
    listener.setblocking(False)
    connecting = asyncio.create_task(asyncio.open_connection(IP, listener.getsockname()[1]))
    peer, _ = await asyncio.get_running_loop().sock_accept(listener)
    reader, writer = await connecting
    sends: list[int] = []
    write: Callable[[bytes], None] = writer.transport.write

    def counted(data: bytes | bytearray | memoryview) -> None:
        sends.append(len(data))
        write(bytes(data))

    writer.transport.write = counted  # type: ignore[method-assign]
    yield Pair(WireStream(reader, writer, max_bytes=1 << 20, idle=5.0), peer, sends)
    writer.close()
    peer.close()
    listener.close()


def arrived(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 16)
    except BlockingIOError:
        return b""


def deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_writes_are_held_until_the_next_wait_and_leave_in_one_send(pair: Pair) -> None:
    pair.stream.write(b"handshake")
    pair.stream.write(b"have-none")
    pair.stream.write(b"extended")
    assert arrived(pair.peer) == b""  # on loopback a send is delivered inside the call: nothing was sent
    await pair.stream.drain(deadline(), "test")
    assert pair.sends == [len(b"handshakehave-noneextended")]
    assert arrived(pair.peer) == b"handshakehave-noneextended"
    assert pair.stream.bytes_out == len(b"handshakehave-noneextended")


async def test_a_read_first_sends_what_the_peer_may_be_waiting_for(pair: Pair) -> None:
    pair.stream.write(b"our handshake")
    loop = asyncio.get_running_loop()

    async def peer_answers_after_ours() -> None:
        got = await loop.sock_recv(pair.peer, 100)
        await loop.sock_sendall(pair.peer, b"theirs after " + got)

    answering = asyncio.create_task(peer_answers_after_ours())
    assert await pair.stream.read_raw(deadline(), "test") == b"theirs after our handshake"
    await answering


async def test_a_switch_to_encryption_sends_the_plain_bytes_first(pair: Pair) -> None:
    pair.stream.write(b"crypto-select")
    encrypted = pair.stream.switched(pending=b"", encrypt=RC4(b"k" * 20))
    encrypted.write(b"bt handshake")
    await encrypted.drain(deadline(), "test")
    assert pair.sends == [len(b"crypto-select") + len(b"bt handshake")]
    assert arrived(pair.peer) == b"crypto-select" + RC4(b"k" * 20).update(b"bt handshake")


async def test_close_sends_what_was_written(pair: Pair) -> None:
    pair.stream.write(b"bye")
    await pair.stream.close()
    pair.peer.setblocking(True)
    pair.peer.settimeout(5)
    assert pair.peer.recv(100) == b"bye"
