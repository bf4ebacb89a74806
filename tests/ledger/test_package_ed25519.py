"""verify.py's pure-Python Ed25519 against RFC 8032's test vectors and against `cryptography` (OpenSSL)."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_watch.ledger import signing
from tracker_watch.ledger.package_verify import ed25519_verify

# RFC 8032 section 7.1, TEST 1, 2, 3 and SHA(abc): (secret key, public key, message, signature)
VECTORS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24"
     "655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aee"
     "b00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28d"
     "c027beceea1ec40a"),
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e"
     "2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17a"
     "d9bef1177331a704"),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), VECTORS)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    assert signing.public_raw(key).hex() == public  # the vectors are read right
    assert key.sign(bytes.fromhex(message)).hex() == signature
    assert ed25519_verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))
    forged = bytearray(bytes.fromhex(signature))
    forged[5] ^= 1
    assert not ed25519_verify(bytes.fromhex(public), bytes.fromhex(message), bytes(forged))
    assert not ed25519_verify(bytes.fromhex(public), bytes.fromhex(message) + b"x", bytes.fromhex(signature))


def _openssl_accepts(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300),
       flip=st.integers(min_value=0, max_value=64 * 8 + 32 * 8 - 1))
def test_agrees_with_cryptography(seed: bytes, message: bytes, flip: int) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public, signature = signing.public_raw(key), key.sign(message)
    assert ed25519_verify(public, message, signature)
    # one flipped bit, in the signature or the key: both implementations reject it (or, rarely, agree it holds)
    sig, pub = bytearray(signature), bytearray(public)
    if flip < 64 * 8:
        sig[flip // 8] ^= 1 << (flip % 8)
    else:
        pub[(flip - 512) // 8] ^= 1 << (flip % 8)
    assert ed25519_verify(bytes(pub), message, bytes(sig)) == _openssl_accepts(bytes(pub), message, bytes(sig))
    assert not ed25519_verify(bytes(pub), message, bytes(sig))


def test_rejects_malformed_input() -> None:
    key = Ed25519PrivateKey.generate()
    public, signature = signing.public_raw(key), key.sign(b"m")
    assert not ed25519_verify(public[:31], b"m", signature)
    assert not ed25519_verify(public, b"m", signature[:63])
    # s >= the group order (s + q verifies in naive implementations): rejected, as RFC 8032 demands
    q = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(signature[32:], "little") + q
    assert not ed25519_verify(public, b"m", signature[:32] + s.to_bytes(32, "little"))
    assert not ed25519_verify(bytes(32), b"m", signature)
