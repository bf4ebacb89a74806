"""Peers for the wire-client tests: libtorrent seeders with a chosen encryption policy, on 127.0.0.100-120."""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from tracker_watch.demo.swarm import Content, make_content, peer_session, wait_listening
from tracker_watch.swarm.wire import ProbeResult, Timeouts, probe

PROBE_IP = "127.0.0.100"   # the verifier's own address
PEER_ID = b"-TW0001-" + os.urandom(6).hex().encode()
FAST = Timeouts(connect=5, handshake=10, have=10, unchoke=20, piece=30, idle=15, total=60)

# libtorrent's encryption policies: forced = only MSE, disabled = only plaintext
ENCRYPTION: dict[str, dict[str, Any]] = {
    "forced": {"in_enc_policy": int(lt.enc_policy.forced), "out_enc_policy": int(lt.enc_policy.forced),
               "allowed_enc_level": int(lt.enc_level.rc4)},
    "disabled": {"in_enc_policy": int(lt.enc_policy.disabled), "out_enc_policy": int(lt.enc_policy.disabled)},
    "enabled": {},
}


@dataclass
class LtSeeder:
    ip: str
    port: int
    session: Any
    content: Content

    @property
    def ti(self) -> Any:
        return lt.torrent_info(self.content.torrent)

    def piece(self, index: int) -> tuple[int, bytes]:
        ti = self.ti
        return ti.piece_size(index), bytes(ti.hash_for_piece(index))

    async def probe(self, index: int = 0, *, info_hash: bytes | None = None, **kw: Any) -> ProbeResult:
        size, digest = self.piece(index)
        assert self.content.v1 is not None
        kw.setdefault("timeouts", FAST)
        return await probe(self.ip, self.port, info_hash or self.content.v1, PEER_ID, index, size, digest,
                           num_pieces=self.content.num_pieces, local_ip=PROBE_IP, **kw)


_content: dict[str, Content] = {}


async def content(version: str = "hybrid") -> Content:
    """One small torrent per version for the whole test run (3 pieces of 64 KiB and a short last one)."""
    if version not in _content:
        base = Path(tempfile.mkdtemp(prefix="tw-wire-"))
        _content[version] = await asyncio.to_thread(make_content, base, size=3 * 65536 + 5000,
                                                    piece_length=65536, version=version)
    return _content[version]


async def start_seeder(ip: str, encryption: str = "enabled", version: str = "hybrid") -> LtSeeder:
    c = await content(version)
    session = peer_session(ip, **ENCRYPTION[encryption])
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(c.torrent)
    params.save_path = str(c.data_dir)
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    params.flags |= lt.torrent_flags.seed_mode
    session.add_torrent(params)
    port = await wait_listening(session)
    return LtSeeder(ip=ip, port=port, session=session, content=c)
