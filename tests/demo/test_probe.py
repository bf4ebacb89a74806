"""The handshake probe against libtorrent seeders: plaintext, MSE (RC4), and a seeder that refuses plaintext."""

from __future__ import annotations

from pathlib import Path

import libtorrent as lt
import pytest

from tracker_watch.demo.probe import ProbeError, claimed_pieces
from tracker_watch.demo.swarm import make_content, peer_session, wait_listening, wait_torrent_ready


async def _seeder(base: Path, ip: str, **settings: int) -> tuple[object, int, bytes, int]:
    content = make_content(base, size=512 * 1024, version="v1")
    session = peer_session(ip, **settings)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(content.torrent)
    params.save_path = str(content.data_dir)
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    params.flags |= lt.torrent_flags.seed_mode
    handle = session.add_torrent(params)
    assert content.v1 is not None
    port = await wait_listening(session)
    await wait_torrent_ready(handle)  # before that, libtorrent refuses the infohash
    return session, port, content.v1, content.num_pieces


async def test_a_plaintext_probe_reads_a_full_bitfield(tmp_path: Path) -> None:
    session, port, info_hash, pieces = await _seeder(tmp_path, "127.0.0.169")
    assert await claimed_pieces("127.0.0.169", port, info_hash, pieces) == set(range(pieces))
    with pytest.raises(ProbeError):  # a peer that has not got the torrent closes the connection
        await claimed_pieces("127.0.0.169", port, bytes(20), pieces)
    del session


async def test_an_encrypted_probe_talks_to_a_seeder_that_requires_encryption(tmp_path: Path) -> None:
    forced = int(lt.enc_policy.forced)
    session, port, info_hash, pieces = await _seeder(tmp_path, "127.0.0.170", in_enc_policy=forced,
                                                     out_enc_policy=forced, allowed_enc_level=int(lt.enc_level.rc4))
    # two runs in ~500 on the shared machine saw libtorrent close one MSE handshake (not reproduced
    # alone): the readiness wait retries anyway, so here a second attempt is allowed too
    for attempt in range(3):
        try:
            have = await claimed_pieces("127.0.0.170", port, info_hash, pieces, encrypted=True)
            break
        except ProbeError:
            if attempt == 2:
                raise
    assert have == set(range(pieces))
    with pytest.raises(ProbeError):
        await claimed_pieces("127.0.0.170", port, info_hash, pieces)
    del session


async def test_a_seeder_answers_once_its_torrent_is_ready(tmp_path: Path) -> None:
    """add_torrent returns while libtorrent still checks the files; a peer that connects then is closed
    unanswered. wait_torrent_ready (which every test seeder and the local swarm wait on) returns after it."""
    content = make_content(tmp_path, size=8 * 2**20, version="v1")
    session = peer_session("127.0.0.168")
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(content.torrent)
    params.save_path = str(content.data_dir)
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)  # no seed_mode: a full check
    handle = session.add_torrent(params)
    port = await wait_listening(session)
    assert content.v1 is not None
    await wait_torrent_ready(handle)
    assert handle.status().is_seeding
    assert await claimed_pieces("127.0.0.168", port, content.v1, content.num_pieces) == set(range(content.num_pieces))
    del session
