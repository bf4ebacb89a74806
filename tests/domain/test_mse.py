"""MSE/PE handshake maths and both state machines, against each other and a reference RC4.
(Interop with a real client: tests/swarm/test_wire_client.py talks to libtorrent with encryption forced.)"""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_watch.domain import mse

SKEY = bytes(range(20))


def reference_rc4(key: bytes, data: bytes, discard: int = 1024) -> bytes:
    """Textbook RC4, to check the `cryptography` one (and our 1024-byte discard) independently."""
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    i = j = 0
    out = bytearray()
    for n in range(discard + len(data)):
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        if n >= discard:
            out.append(data[n - discard] ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def test_rc4_discards_1024_bytes_and_streams() -> None:
    key, data = b"k" * 20, os.urandom(300)
    rc4 = mse.RC4(key)
    assert rc4.update(data[:100]) + rc4.update(data[100:]) == reference_rc4(key, data)


def test_diffie_hellman_agrees_and_rejects_degenerate_keys() -> None:
    a, b = mse.private_key(), mse.private_key()
    assert mse.shared_secret(a, mse.public_key(b)) == mse.shared_secret(b, mse.public_key(a))
    assert len(mse.public_key(a)) == mse.KEY_LEN
    for bad in (0, 1, mse.P - 1, mse.P):
        with pytest.raises(mse.MSEError, match="degenerate"):
            mse.shared_secret(a, bad.to_bytes(96, "big"))


def test_derivations_follow_the_spec() -> None:
    s = bytes(95) + b"\x05"
    assert mse.req1(s) == mse.sha1(b"req1", s)
    assert mse.req23(s, SKEY) == bytes(x ^ y for x, y in zip(mse.sha1(b"req2", SKEY), mse.sha1(b"req3", s),
                                                                 strict=True))
    key_a, key_b = mse.stream_keys(s, SKEY)
    assert (key_a, key_b) == (mse.sha1(b"keyA", s, SKEY), mse.sha1(b"keyB", s, SKEY))


def run(ini: mse.Initiator, resp: mse.Responder, chunk: int) -> None:
    """Shuttle bytes between the two machines in chunks until both are done."""
    for _ in range(10_000):
        if ini.done and resp.done:
            return
        for src, dst in ((ini, resp), (resp, ini)):
            out = src.take_output()
            for i in range(0, len(out), chunk):
                if not dst.done:
                    dst.feed(out[i:i + chunk])
    raise AssertionError("handshake did not finish")


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 700), st.binary(max_size=512), st.binary(max_size=512), st.binary(max_size=100),
       st.sampled_from([mse.CRYPTO_RC4, mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT]))
def test_initiator_and_responder_agree(chunk: int, pad_a: bytes, pad_b: bytes, ia: bytes, provide: int) -> None:
    ini = mse.Initiator(SKEY, provide, ia, pad_a=pad_a, pad_c=b"xyz")
    resp = mse.Responder([os.urandom(20), SKEY], allow=mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT, pad_b=pad_b)
    run(ini, resp, chunk)
    assert resp.ia == ia
    assert resp.skey == SKEY
    assert ini.selected == resp.selected == mse.CRYPTO_RC4
    assert ini.encrypt is not None
    assert resp.decrypt is not None
    assert resp.encrypt is not None
    assert ini.decrypt is not None
    assert resp.decrypt.update(ini.encrypt.update(b"ping")) == b"ping"
    assert ini.decrypt.update(resp.encrypt.update(b"pong")) == b"pong"


def test_plaintext_selected_leaves_payload_clear() -> None:
    ini = mse.Initiator(SKEY, mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT, b"hello")
    resp = mse.Responder([SKEY], allow=mse.CRYPTO_PLAINTEXT)
    run(ini, resp, 1000)
    assert ini.selected == mse.CRYPTO_PLAINTEXT
    assert (ini.encrypt, ini.decrypt, resp.ia) == (None, None, b"hello")


def test_payload_arriving_with_the_handshake_is_decrypted() -> None:
    ini = mse.Initiator(SKEY, mse.CRYPTO_RC4)
    resp = mse.Responder([SKEY], allow=mse.CRYPTO_RC4)
    resp.feed(ini.take_output())
    ini.feed(resp.take_output())
    resp.feed(ini.take_output())
    assert resp.encrypt is not None
    ini.feed(resp.take_output() + resp.encrypt.update(b"BitTorrent handshake"))
    assert ini.payload == b"BitTorrent handshake"


def test_responder_refuses_unknown_infohash_and_unwanted_crypto() -> None:
    ini = mse.Initiator(SKEY, mse.CRYPTO_RC4)
    resp = mse.Responder([b"x" * 20], allow=mse.CRYPTO_RC4)
    resp.feed(ini.take_output())
    ini.feed(resp.take_output())
    with pytest.raises(mse.MSEError, match="infohash we do not serve"):
        resp.feed(ini.take_output())
    ini = mse.Initiator(SKEY, mse.CRYPTO_RC4)
    resp = mse.Responder([SKEY], allow=mse.CRYPTO_PLAINTEXT)
    resp.feed(ini.take_output())
    ini.feed(resp.take_output())
    with pytest.raises(mse.MSEError, match="we allow"):
        resp.feed(ini.take_output())


def test_initiator_gives_up_when_no_verification_constant_in_padding() -> None:
    ini = mse.Initiator(SKEY, mse.CRYPTO_RC4)
    ini.feed(mse.public_key(mse.private_key()))
    with pytest.raises(mse.MSEError, match="padding limit"):
        ini.feed(bytes(mse.MAX_PAD + 8))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=900), st.integers(1, 200))
def test_arbitrary_bytes_raise_only_mse_error(data: bytes, chunk: int) -> None:
    for machine in (mse.Initiator(SKEY, mse.CRYPTO_RC4), mse.Responder([SKEY], allow=mse.CRYPTO_RC4)):
        with contextlib.suppress(mse.MSEError):
            for i in range(0, len(data), chunk):
                machine.feed(data[i:i + chunk])


def test_skey_index_finds_what_was_added_and_not_what_was_discarded() -> None:
    others = [os.urandom(20) for _ in range(50)]
    index = mse.SkeyIndex(others)
    index.add(SKEY)
    s = os.urandom(96)
    assert index.find(s, mse.req23(s, SKEY)) == SKEY
    assert index.find(s, mse.req23(s, b"x" * 20)) == b""
    index.discard(SKEY)
    assert (index.find(s, mse.req23(s, SKEY)), len(index)) == (b"", 50)
    ini = mse.Initiator(others[7], mse.CRYPTO_RC4)
    resp = mse.Responder(index, allow=mse.CRYPTO_RC4)
    run(ini, resp, 1000)
    assert resp.skey == others[7]
