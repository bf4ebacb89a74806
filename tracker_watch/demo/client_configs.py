"""Command lines and configuration files that make each real client a quiet loopback seeder.

Every builder writes the client's configuration under `spec.own` and returns its argv plus an optional
step to run once the process is up (transmission needs its torrent added over RPC).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AfterStart = Callable[[Any], Awaitable[None]]  # takes the RealSeeder
Launch = tuple[list[str], AfterStart | None]


@dataclass(frozen=True)
class Spec:
    ip: str
    port: int
    own: Path  # the client's working directory
    data: Path  # holds the content file, already complete
    torrent: Path
    encryption: str  # prefer | require | plaintext
    upload_limit_kib: int | None
    rpc_port: int  # on 127.0.0.1, for clients that need one


def client_env(own: Path) -> dict[str, str]:
    """A private HOME/XDG tree, and no proxy: curl inside the clients would send announces to one."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("XDG_")}
    env.update(HOME=str(own), XDG_CONFIG_HOME=str(own / "config"), XDG_DATA_HOME=str(own / "share"),
               XDG_CACHE_HOME=str(own / "cache"), no_proxy="*", NO_PROXY="*", LC_ALL="C")
    return env


def transmission(s: Spec) -> Launch:
    conf = s.own / "transmission"
    conf.mkdir(exist_ok=True)
    settings = {
        "bind-address-ipv4": s.ip, "bind-address-ipv6": "::1",  # v6 can't be turned off; keep it on loopback
        "peer-port": s.port, "peer-port-random-on-start": False, "port-forwarding-enabled": False,
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": True,
        "encryption": {"plaintext": 0, "prefer": 1, "require": 2}[s.encryption],
        "rpc-enabled": True, "rpc-bind-address": "127.0.0.1", "rpc-port": s.rpc_port,
        "rpc-authentication-required": False, "rpc-whitelist-enabled": False, "rpc-host-whitelist-enabled": False,
        "speed-limit-up": s.upload_limit_kib or 0, "speed-limit-up-enabled": s.upload_limit_kib is not None,
        "ratio-limit-enabled": False, "idle-seeding-limit-enabled": False, "blocklist-enabled": False,
        "download-dir": str(s.data), "incomplete-dir-enabled": False, "watch-dir-enabled": False,
        "start-added-torrents": True, "download-queue-enabled": False, "seed-queue-enabled": False,
        "message-level": 2, "umask": 18, "cache-size-mb": 4,
    }
    (conf / "settings.json").write_text(json.dumps(settings, indent=1))
    argv = ["transmission-daemon", "--foreground", "--config-dir", str(conf), "--logfile", str(s.own / "daemon.log")]

    async def add_torrent(seeder: Any) -> None:
        # the RPC server comes up a moment after the process: retry until it takes the torrent
        remote = ["transmission-remote", f"127.0.0.1:{s.rpc_port}", "--add", str(s.torrent),
                  "--download-dir", str(s.data)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            proc = await asyncio.create_subprocess_exec(*remote, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT, env=client_env(s.own))
            out, _ = await proc.communicate()
            if proc.returncode == 0 and b"success" in out:
                return
            if seeder.process.returncode is not None or loop.time() > deadline:
                raise RuntimeError(f"transmission-remote --add failed: {out.decode(errors='replace').strip()}")
            await asyncio.sleep(0.2)

    return argv, add_torrent


def aria2(s: Spec) -> Launch:
    argv = [
        "aria2c", "--no-conf=true", f"--dir={s.data}", "--check-integrity=true", "--bt-hash-check-seed=true",
        "--seed-ratio=0.0",  # 0.0: seed regardless of ratio, and without --seed-time: for ever
        f"--listen-port={s.port}", f"--interface={s.ip}", f"--bt-external-ip={s.ip}", "--disable-ipv6=true",
        "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
        "--bt-stop-timeout=0", "--bt-max-peers=0", "--file-allocation=none", "--allow-overwrite=false",
        "--auto-file-renaming=false", "--summary-interval=0", "--console-log-level=notice",
        "--async-dns=false", "--enable-rpc=false", "--follow-torrent=false", f"--stop-with-process={os.getpid()}",
        f"--log={s.own / 'aria2.log'}", "--log-level=info",
    ]
    if s.encryption == "require":
        argv += ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]
    elif s.encryption == "plaintext":
        argv += ["--bt-min-crypto-level=plain"]
    if s.upload_limit_kib is not None:
        argv.append(f"--max-overall-upload-limit={s.upload_limit_kib}K")
    argv.append(str(s.torrent))
    return argv, None


def rtorrent(s: Spec) -> Launch:
    session = s.own / "session"
    session.mkdir(exist_ok=True)
    crypto = {"plaintext": "allow_incoming,enable_retry",
              "prefer": "allow_incoming,try_outgoing,enable_retry",
              "require": "allow_incoming,try_outgoing,require,require_RC4"}[s.encryption]
    lines = [
        "system.daemon.set = true",  # no curses UI, so no TTY needed
        f'session.path.set = "{session}"', "session.use_lock.set = no",  # a SIGKILLed run leaves its lock
        f'directory.default.set = "{s.data}"',
        f"network.bind_address.set = {s.ip}", f"network.local_address.set = {s.ip}",
        f"network.port_range.set = {s.port}-{s.port}", "network.port_random.set = no",
        "dht.mode.set = disable", "protocol.pex.set = no", "trackers.use_udp.set = no",
        f"protocol.encryption.set = {crypto}",
        f"throttle.global_up.max_rate.set_kb = {s.upload_limit_kib or 0}",
        f'log.open_file = main, "{s.own / "rtorrent.log"}"', "log.add_output = info, main",
        f'load.start_verbose = "{s.torrent}"',
    ]
    rc = s.own / "rtorrent.rc"
    rc.write_text("\n".join(lines) + "\n")
    return ["rtorrent", "-n", "-o", f"import={rc}"], None


def qbittorrent(s: Spec) -> Launch:
    profile = s.own / "profile"
    conf_dir = profile / "qBittorrent" / "config"
    conf_dir.mkdir(parents=True, exist_ok=True)
    limit = s.upload_limit_kib or 0  # stored in KiB/s (the WebUI API speaks bytes/s)
    conf = f"""[LegalNotice]
Accepted=true

[BitTorrent]
Session\\Port={s.port}
Session\\UseRandomPort=false
Session\\Interface=lo
Session\\InterfaceName=lo
Session\\InterfaceAddress={s.ip}
Session\\AnnounceIP={s.ip}
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\Encryption={ {"prefer": 0, "require": 1, "plaintext": 2}[s.encryption] }
Session\\GlobalUPSpeedLimit={limit}
Session\\QueueingSystemEnabled=false
Session\\GlobalMaxRatio=-1
Session\\DefaultSavePath={s.data}
Session\\AddTorrentPaused=false
Session\\AnonymousModeEnabled=false

[Network]
PortForwardingEnabled=false

[Preferences]
WebUI\\Address=127.0.0.1
WebUI\\Port={s.rpc_port}
WebUI\\UseUPnP=false
WebUI\\LocalHostAuth=false
Connection\\ResolvePeerCountries=false
Connection\\ResolvePeerHostNames=false
General\\Locale=en
"""
    (conf_dir / "qBittorrent.conf").write_text(conf)
    argv = ["qbittorrent-nox", f"--profile={profile}", f"--webui-port={s.rpc_port}", f"--save-path={s.data}",
            "--add-paused=false", "--skip-dialog=true", str(s.torrent)]
    return argv, None
