#!/usr/bin/env python3
"""Check a tracker-watch evidence package without tracker-watch, its database, or any third-party package.

    python3 verify.py [--key FINGERPRINT ...] [PACKAGE]     (Python 3.9+, standard library only)

PACKAGE is the unpacked folder (default: the folder this file is in) or the zip itself. The check:
  1. the chain segment of each node links row by row (SHA-256) from its first row to a checkpoint, whose
     Ed25519 signature (verified here, RFC 8032) covers node, position and head hash; the key's id is the
     one the checkpoint names;
  2. every row shown in full hashes to its row's content hash — in the row's chain format: 1, canonical
     JSON, or 2, a fixed binary encoding (below; tracker-watch's docs/chain.md) — and all of them are of
     one peer IP in one target, written by the node whose chain holds them;
  3. observations.json, incidents.json and verified_pieces.json are exactly what those signed rows say
     (re-derived here and compared), so nothing in them can be changed without breaking 1 or 2;
  4. info.bencoded hashes to the infohash the signed rows name, and each verified piece's SHA-1 is the
     piece hash in info.bencoded;
  5. with --key, every checkpoint was signed by a key you pinned. Without it the check shows only that the
     package is consistent and signed by the key it carries: compare the printed fingerprint with the one
     the operator publishes (`tracker-watch ledger pubkey`, GET /api/v1/signing-keys, each notice's text).
manifest.json (file hashes, labels) is not signed; it only catches accidental damage.
Exit codes: 0 every check passed; 1 the package is altered or not what it claims (or not signed by the
pinned key); 2 usage error; 3 cannot check (a file is missing or unreadable, or a v2-only torrent whose
piece hashes are not in the info dictionary).
This file is copied verbatim into every package; tracker-watch's own tests run it against packages.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import struct
import sys
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_TAMPERED, EXIT_USAGE, EXIT_CANNOT_CHECK = 0, 1, 2, 3
FORMAT = "tracker-watch evidence package v2"
DOMAIN = b"tracker-watch/chain/v1"
DOMAINS = {1: DOMAIN, 2: b"tracker-watch/chain/v2"}  # chain format → link domain; a row's "format" (default 1)
DERIVED = ("observations.json", "incidents.json", "verified_pieces.json")
REQUIRED = ("manifest.json", "chain.json", "info.bencoded", *DERIVED)

# --- Ed25519 signature verification, after RFC 8032 section 6 (cofactorless, as OpenSSL) --------------
_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
Point = tuple[int, int, int, int]  # extended homogeneous coordinates (X, Y, Z, T)


def _add(a: Point, b: Point) -> Point:
    e1, f1 = (a[1] - a[0]) * (b[1] - b[0]) % _P, (a[1] + a[0]) * (b[1] + b[0]) % _P
    c, d = 2 * a[3] * b[3] * _D % _P, 2 * a[2] * b[2] % _P
    e, f, g, h = f1 - e1, d - c, d + c, f1 + e1
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _mul(s: int, pt: Point) -> Point:
    out: Point = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        s >>= 1
    return out


def _equal(a: Point, b: Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    return _P - x if (x & 1) != sign else x


def _decompress(raw: bytes) -> Point | None:
    y = int.from_bytes(raw, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0) or 0
_G: Point = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _Q
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


# --- keys, chain links, canonical encodings (as tracker_watch/domain/chain.py and chain_v2.py) -------
def fingerprint(public_key: bytes) -> str:
    digest = hashlib.sha256(public_key).hexdigest()
    return "SHA256:" + ":".join(digest[i:i + 4] for i in range(0, 64, 4))


def parse_fingerprint(text: str) -> str | None:
    """The 64 hex digits of a fingerprint however it was copied (prefix, colons, spaces, case)."""
    t = text.strip().lower()
    t = t[len("sha256:"):] if t.startswith("sha256:") else t
    digits = "".join(c for c in t if c not in ": -")
    ok = len(digits) == 64 and all(c in "0123456789abcdef" for c in digits)
    return digits if ok else None


def link_hash(node: str, seq: int, prev_hash: bytes, content: bytes, fmt: int = 1) -> bytes:
    raw = node.encode()
    return hashlib.sha256(DOMAINS[fmt] + struct.pack(">H", len(raw)) + raw + struct.pack(">Q", seq) + prev_hash
                          + content).digest()


def canonical(kind: str, fields: dict[str, Any]) -> bytes:
    """Format 1: the fields and the kind as JSON with sorted keys and no spaces."""
    doc = dict(fields)
    doc["kind"] = kind
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


# Format 2 (docs/chain.md): the kind, 0x00, then each field in this order, 0x00 if null, else 0x01 + value.
V2_FIELDS = {
    "observation": (("id", "uuid"), ("target_id", "int"), ("infohash_v1", "bytes"), ("infohash_v2", "bytes"),
                    ("observed_at", "time"), ("ip", "ip"), ("port", "int"), ("source", "text"),
                    ("tracker_url", "text"), ("grade", "text"), ("peer_id", "bytes"), ("client", "text"),
                    ("pieces_advertised", "int"), ("num_pieces", "int"), ("pieces_verified", "int"),
                    ("bytes_verified", "int"), ("node", "text"), ("version", "text"), ("our_ip", "ip"),
                    ("our_port", "int"), ("piece_index", "int"), ("piece_bytes", "int"), ("piece_sha1", "bytes"),
                    ("piece_sha256", "bytes")),
    "incident_change": (("incident_id", "int"), ("target_id", "int"), ("ip", "ip"), ("window_start", "time"),
                        ("first_seen", "time"), ("last_seen", "time"), ("best_grade", "text"), ("corrupt", "bool"),
                        ("ports", "ints"), ("pieces_verified", "ints"), ("bytes_verified", "int"),
                        ("observations", "int"), ("recorded_at", "time")),
}
_UTC = timezone.utc  # noqa: UP017 (datetime.UTC is 3.11+; this file runs on 3.9)
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


def _exact(ok: bool, typ: str, value: Any) -> None:
    """Each value has exactly one way to be written in a package; any other is an alteration."""
    if not ok:
        raise ValueError(f"{value!r} is not a {typ} as tracker-watch writes it")


def v2_value(typ: str, v: Any) -> bytes:
    if v is None:
        return b"\x00"
    try:
        return b"\x01" + _v2_payload(typ, v)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{v!r} is not a {typ} as tracker-watch writes it") from None


def _v2_payload(typ: str, v: Any) -> bytes:
    if typ in ("int", "bool"):
        _exact(type(v) is (int if typ == "int" else bool), typ, v)
        return bytes([v]) if typ == "bool" else v.to_bytes(8, "big", signed=True)
    if typ == "ints":
        _exact(type(v) is list and all(type(i) is int for i in v), typ, v)
        return len(v).to_bytes(4, "big") + b"".join(i.to_bytes(8, "big", signed=True) for i in v)
    _exact(isinstance(v, str), typ, v)
    if typ == "time":
        t = datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_UTC)
        _exact(t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") == v, typ, v)
        return ((t - _EPOCH) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True)
    if typ == "ip":
        addr = ipaddress.ip_address(v)
        _exact(str(addr) == v, typ, v)
        return bytes([len(addr.packed)]) + addr.packed
    if typ == "uuid":
        u = uuid.UUID(v)
        _exact(str(u) == v, typ, v)
        return u.bytes
    raw = bytes.fromhex(v) if typ == "bytes" else v.encode()
    _exact(typ == "text" or raw.hex() == v, typ, v)
    return len(raw).to_bytes(4, "big") + raw


def encode_v2(kind: str, fields: dict[str, Any]) -> bytes:
    spec = V2_FIELDS[kind]
    _exact(type(fields) is dict and set(fields) == {name for name, _ in spec}, kind, fields)
    return kind.encode() + b"\x00" + b"".join(v2_value(typ, fields[name]) for name, typ in spec)


def content_bytes(kind: str, fields: dict[str, Any], fmt: int) -> bytes:
    """What a row's content hash is the SHA-256 of, in its chain format."""
    return encode_v2(kind, fields) if fmt == 2 else canonical(kind, fields)


def checkpoint_message(cp: dict[str, Any]) -> bytes:
    return (f"tracker-watch checkpoint v1\nnode={cp['node']}\nseq={cp['seq']}\nhead={cp['head_hash']}\n"
            f"signed_at={cp['signed_at']}\n").encode()


# --- bencode, enough to read an info dictionary -------------------------------------------------------
def bdecode(data: bytes, pos: int = 0) -> tuple[Any, int]:
    c = data[pos:pos + 1]
    if c == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1:end]), end + 1
    if c in (b"l", b"d"):
        items, pos = [], pos + 1
        while data[pos:pos + 1] != b"e":
            item, pos = bdecode(data, pos)
            items.append(item)
        if c == b"l":
            return items, pos + 1
        if len(items) % 2:
            raise ValueError("a bencoded dictionary key has no value")
        return {items[i]: items[i + 1] for i in range(0, len(items), 2)}, pos + 1
    colon = data.index(b":", pos)
    length = int(data[pos:colon])
    if length < 0 or colon + 1 + length > len(data):
        raise ValueError("truncated string")
    return data[colon + 1:colon + 1 + length], colon + 1 + length


def v1_piece_hashes(info: bytes) -> bytes | None:
    value, end = bdecode(info)
    if not isinstance(value, dict) or end != len(info):
        raise ValueError("info.bencoded is not one bencoded dictionary")
    pieces = value.get(b"pieces")
    return pieces if isinstance(pieces, bytes) else None


# --- what the data files must say, derived from the chain rows alone ---------------------------------
def shown(segment: dict[str, Any], kind: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(node, position, fields) of the rows of this kind shown in full, in chain order."""
    return [(node, row["seq"], row["fields"]) for node in sorted(segment["nodes"])
            for row in segment["nodes"][node]["rows"] if row["kind"] == kind and row.get("fields") is not None]


def derive(segment: dict[str, Any], info: bytes) -> dict[str, Any]:
    observations = [f for _, _, f in shown(segment, "observation")]
    latest: dict[Any, dict[str, Any]] = {}  # each incident's last recorded state
    for _, _, f in sorted(shown(segment, "incident_change"), key=lambda c: (c[2]["recorded_at"], c[0], c[1])):
        latest[f["incident_id"]] = f
    hashes = v1_piece_hashes(info)
    pieces = []
    for o in observations:
        i = o["piece_index"]
        if o["grade"] != "verified" or i is None:
            continue
        expected = hashes[i * 20:i * 20 + 20].hex() if hashes and 0 <= i < len(hashes) // 20 else None
        pieces.append({"piece": i, "port": o["port"], "observed_at": o["observed_at"],
                       "bytes_from_peer": o["piece_bytes"], "sha1": o["piece_sha1"], "sha256": o["piece_sha256"],
                       "expected_sha1": expected})
    return {"observations.json": observations,
            "incidents.json": sorted(latest.values(), key=lambda c: (c["window_start"], c["incident_id"])),
            "verified_pieces.json": pieces}


# --- the check -----------------------------------------------------------------------------------------
class Report:
    def __init__(self) -> None:
        self.tampered: list[str] = []
        self.unchecked: list[str] = []
        self.facts: list[str] = []
        self.keys: dict[str, str] = {}  # node -> key fingerprint


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a JSON object names the same key twice")
    return dict(pairs)


def load_json(data: bytes) -> Any:
    return json.loads(data, object_pairs_hook=_no_duplicates)


def check(files: dict[str, bytes], pinned: set[str] | frozenset[str] = frozenset()) -> Report:
    report = Report()
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        report.unchecked.append(f"the package lacks {', '.join(missing)}; nothing can be checked without it")
        return report
    for name in sorted(set(files) - {*REQUIRED, "verify.py"}):
        report.facts.append(f"{name} is not part of the package format: nothing in it was checked")
    try:
        _check(files, pinned, report)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        report.tampered.append(f"malformed package ({type(exc).__name__}: {exc})")
    return report


def _check(files: dict[str, bytes], pinned: set[str] | frozenset[str], report: Report) -> None:
    manifest = load_json(files["manifest.json"])
    if manifest.get("format") != FORMAT:
        report.tampered.append(f"manifest.json: not a {FORMAT!r}")
    for name, digest in manifest["files"].items():
        if name in files and hashlib.sha256(files[name]).hexdigest() != digest:
            report.tampered.append(f"{name}: SHA-256 differs from the manifest")
    segment = load_json(files["chain.json"])
    if not segment["nodes"]:
        report.tampered.append("chain.json: no chain segment")
    for node, part in segment["nodes"].items():
        report.tampered += check_node(node, part, pinned, report)
    report.tampered += check_subject(segment, files["info.bencoded"], report)
    derived = derive(segment, files["info.bencoded"])
    for name in DERIVED:
        # compared as canonical JSON: in Python 1 == 1.0 == True, in a reader's eyes they differ
        if json.dumps(load_json(files[name]), sort_keys=True) != json.dumps(derived[name], sort_keys=True):
            report.tampered.append(f"{name}: differs from what the signed chain rows say")
    for p in derived["verified_pieces.json"]:
        if p["expected_sha1"] is None and v1_piece_hashes(files["info.bencoded"]) is None:
            report.unchecked.append(f"piece {p['piece']}: a v2-only torrent's piece hashes are not in its info "
                                    "dictionary")
        elif p["sha1"] != p["expected_sha1"]:
            report.tampered.append(f"piece {p['piece']}: its SHA-1 is not the torrent's piece hash")
    report.facts.append(f"verified pieces: {len(derived['verified_pieces.json'])}, "
                        f"incidents: {len(derived['incidents.json'])}")


def check_node(node: str, part: dict[str, Any], pinned: set[str] | frozenset[str], report: Report) -> list[str]:
    problems: list[str] = []
    rows, cp = part["rows"], part["checkpoint"]
    public = bytes.fromhex(part["public_key"])
    report.keys[node] = fingerprint(public)
    prev = bytes.fromhex(part["prev_hash_before_first"])
    for row in rows:
        where = f"node {node} position {row['seq']}"
        fields, fmt = row.get("fields"), row.get("format", 1)
        if row["kind"] not in ("observation", "incident_change"):
            problems.append(f"{where}: unknown row kind {row['kind']!r}")
        if type(fmt) is not int or fmt not in DOMAINS:
            problems.append(f"{where}: unknown chain format {fmt!r}")
            fmt = 1
        if fields is not None and (hashlib.sha256(content_bytes(row["kind"], fields, fmt)).hexdigest()
                                   != row["content_hash"]):
            problems.append(f"{where}: fields do not match the content hash")
        if fields is not None and row["kind"] == "observation" and fields["node"] != node:
            problems.append(f"{where}: a row of node {fields['node']} in node {node}'s chain")
        if row["prev_hash"] != prev.hex():
            problems.append(f"{where}: does not link to the previous position")
        prev = link_hash(node, row["seq"], prev, bytes.fromhex(row["content_hash"]), fmt)
        if prev.hex() != row["row_hash"]:
            problems.append(f"{where}: row hash does not match")
    seqs = [r["seq"] for r in rows]
    if not rows or seqs != list(range(seqs[0], seqs[0] + len(rows))):
        problems.append(f"node {node}: positions are missing, repeated or out of order")
    if cp["node"] != node or not rows or cp["seq"] != seqs[-1] or cp["head_hash"] != prev.hex():
        problems.append(f"node {node}: the segment does not end at its signed checkpoint")
    if cp["key_id"] != hashlib.sha256(public).hexdigest()[:16]:
        problems.append(f"node {node}: the checkpoint names key {cp['key_id']}, not the key in the package")
    if not ed25519_verify(public, checkpoint_message(cp), bytes.fromhex(cp["signature"])):
        problems.append(f"node {node}: the checkpoint signature does not verify")
    if pinned and report.keys[node].split(":", 1)[1].replace(":", "") not in pinned:
        problems.append(f"node {node}: signed by key {report.keys[node]}, which is not a key you pinned")
    report.facts.append(f"node {node}: positions {seqs[0] if seqs else '?'}..{cp['seq']} sealed by the checkpoint "
                        f"signed {cp['signed_at']} with key {report.keys[node]}")
    return problems


def check_subject(segment: dict[str, Any], info: bytes, report: Report) -> list[str]:
    """All rows shown are of one peer in one target, and info.bencoded is that target's torrent."""
    problems: list[str] = []
    obs = [f for _, _, f in shown(segment, "observation")]
    changes = [f for _, _, f in shown(segment, "incident_change")]
    if not obs:
        return ["the chain shows no observation"]
    subjects = {(f["target_id"], f["ip"]) for f in obs + changes}
    if len(subjects) != 1:
        problems.append(f"the rows are of several peers or targets: {sorted(map(str, subjects))}")
    torrents = {(f["infohash_v1"], f["infohash_v2"]) for f in obs}
    if len(torrents) != 1:
        return [*problems, "the observations name several torrents"]
    v1, v2 = next(iter(torrents))
    if v1 is None and v2 is None:
        problems.append("the observations name no infohash")
    if v1 is not None and hashlib.sha1(info).hexdigest() != v1:
        problems.append("info.bencoded does not hash to the signed infohash (v1)")
    if v2 is not None and hashlib.sha256(info).hexdigest() != v2:
        problems.append("info.bencoded does not hash to the signed infohash (v2)")
    times = sorted(f["observed_at"] for f in obs)
    name = bdecode(info)[0].get(b"name", b"?")
    report.facts.append(f"torrent {name.decode('utf-8', 'replace')!r}, infohash {v1 or v2}")
    report.facts.append(f"peer {obs[0]['ip']} in target {obs[0]['target_id']}: "
                        f"{len(obs)} observations from {times[0]} to {times[-1]}")
    return problems


# --- command line ----------------------------------------------------------------------------------
def read_package(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    with zipfile.ZipFile(path) as zf:
        return {Path(n).name: zf.read(n) for n in zf.namelist() if not n.endswith("/")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verify.py", description="Check a tracker-watch evidence package.")
    parser.add_argument("package", nargs="?", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--key", action="append", default=[], metavar="FINGERPRINT",
                        help="the operator's published key fingerprint (repeat for several nodes)")
    args = parser.parse_args(argv)
    pinned = {parse_fingerprint(k) for k in args.key}
    if None in pinned:
        print("verify.py: error: --key takes a key fingerprint (64 hex digits, e.g. SHA256:1a2b:…)", file=sys.stderr)
        return EXIT_USAGE
    try:
        files = read_package(args.package)
    except (OSError, zipfile.BadZipFile) as exc:
        print(f"verify.py: error: cannot read {args.package}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = check(files, {p for p in pinned if p})
    return show(report, bool(pinned))


def show(report: Report, pinned: bool) -> int:
    for line in report.facts:
        print(f"  {line}")
    for p in report.tampered:
        print("FAIL:", p)
    for p in report.unchecked:
        print("CANNOT CHECK:", p)
    if report.tampered:
        print(f"TAMPERED: {len(report.tampered)} problem(s); this package is not what it claims to be")
        return EXIT_TAMPERED
    if report.unchecked:
        print("CANNOT CHECK: the package could not be checked in full (see above)")
        return EXIT_CANNOT_CHECK
    if pinned:
        print("OK: the package is consistent with its signed chain rows, signed by the key(s) you pinned")
    else:
        print("OK (self-consistency only): the package agrees with its signed chain rows and their signature, "
              "but no --key was given, so nothing shows the signing key is the operator's. Compare "
              f"{', '.join(sorted(set(report.keys.values())))} with the fingerprint the operator publishes, or run "
              "again with --key FINGERPRINT")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
