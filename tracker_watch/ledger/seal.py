"""Sealing a node's chain on demand (`evidence export --seal`), instead of waiting for the next checkpoint.

A signature vouches for every row up to the head it names, so the rows no checkpoint covers yet are
walked first — from the last checkpoint's head, whose own signature must verify — and a tail that does
not verify is never signed. The head is locked for the whole time, as the evidence writer locks it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tracker_watch.domain import chain
from tracker_watch.ledger import signing
from tracker_watch.ledger.db import Conn
from tracker_watch.ledger.evidence import sign_checkpoint
from tracker_watch.ledger.verify import chunks


class SealRefused(Exception):
    """The unsealed rows do not verify (or the last checkpoint does not): signing them would vouch for them."""


async def seal(conn: Conn, node: str, key: Ed25519PrivateKey) -> int | None:
    """Sign `node`'s head now if no checkpoint covers it; returns the sealed position (None: empty chain)."""
    async with conn.transaction():
        head = await conn.fetchrow("SELECT seq, head_hash FROM chain_heads WHERE node = $1 FOR UPDATE", node)
        if head is None or head["seq"] == 0:
            return None
        last = await conn.fetchrow("SELECT c.*, k.public_key FROM chain_checkpoints c LEFT JOIN signing_keys k "
                                   "USING (key_id) WHERE c.node = $1 ORDER BY c.seq DESC LIMIT 1", node)
        if last is not None and last["seq"] >= head["seq"]:
            return int(last["seq"])
        state = chain.WalkState()
        if last is not None and last["key_id"] != signing.key_id(signing.public_raw(key)):
            # another key here than the one the node signs with: a second key would confuse every pin
            raise SealRefused(f"node {node}'s checkpoints are signed with key {last['key_id']}, not with this "
                              f"machine's key {signing.key_id(signing.public_raw(key))}")
        if last is not None:
            message = chain.checkpoint_message(node, last["seq"], bytes(last["head_hash"]), last["signed_at"])
            if last["public_key"] is None or not signing.verify(bytes(last["public_key"]), bytes(last["signature"]),
                                                                message):
                raise SealRefused(f"node {node}'s last checkpoint (position {last['seq']}) does not verify")
            state = chain.WalkState(int(last["seq"]), bytes(last["head_hash"]))
        async for rows in chunks(conn, node, after=state.seq):
            if (finding := chain.verify_chain(node, rows, state).finding) is not None:
                raise SealRefused(f"node {node}'s unsealed rows do not verify: position {finding.seq} "
                                  f"({finding.kind} {finding.ref}) {finding.problem} — {finding.detail}")
        if (state.seq, state.head) != (head["seq"], bytes(head["head_hash"])):
            raise SealRefused(f"node {node}'s rows end at position {state.seq}, but its head is at {head['seq']}")
        await sign_checkpoint(conn, node, key, int(head["seq"]), bytes(head["head_hash"]))
        return int(head["seq"])
