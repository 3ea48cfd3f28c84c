"""CURVE key files and the bridge's transport-security rules, shared by the server, the client and the CLI.

The rules: CURVE (encryption plus authentication by public key) is the default and the only option off the
machine; plaintext needs an explicit ``allow_plaintext`` flag and a loopback address, checked on both sides so
that neither a misconfigured server nor a misconfigured client can put an arm on the network unauthenticated.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"


@dataclass(frozen=True)
class KeyFiles:
    """The two files of one CURVE key pair, as written by ``generate_keys``."""

    public: Path
    secret: Path


@dataclass(frozen=True)
class CurveKeys:
    """Z85-encoded key material loaded from files, ready for the socket options."""

    public: bytes
    secret: bytes


def generate_keys(directory: str | os.PathLike, name: str, overwrite: bool = False) -> KeyFiles:
    """Write ``<name>.key`` (public, safe to copy around) and ``<name>.key_secret`` (owner-only) in ``directory``.

    Refuses to overwrite an existing pair unless asked: replacing a deployed key silently locks out its peer.
    """
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"key name must be a plain file name, got {name!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    files = KeyFiles(folder / f"{name}{PUBLIC_SUFFIX}", folder / f"{name}{SECRET_SUFFIX}")
    existing = [str(p) for p in (files.public, files.secret) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"key files already exist: {existing} (pass overwrite=True / --force to replace)"
        )
    public, secret = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret, stat.S_IRUSR | stat.S_IWUSR)
    return KeyFiles(Path(public), Path(secret))


def load_secret_keys(path: str | os.PathLike) -> CurveKeys:
    """The pair from a ``.key_secret`` file (it holds both halves)."""
    file = _existing_file(path, "secret key")
    if file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key %s is readable by other users; chmod 600 it", file)
    try:
        public, secret = zmq.auth.load_certificate(str(file))
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read CURVE key file {file}: {exc}") from exc
    if not secret:
        raise ValueError(f"{file} holds no secret key: pass the '{SECRET_SUFFIX}' file, not the public one")
    return CurveKeys(public=public, secret=secret)


def load_public_key(path: str | os.PathLike) -> bytes:
    """The public key from a ``.key`` file (a ``.key_secret`` file works too)."""
    file = _existing_file(path, "public key")
    try:
        public, _ = zmq.auth.load_certificate(str(file))
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read CURVE key file {file}: {exc}") from exc
    return public


def authorized_key_files(directory: str | os.PathLike) -> list[Path]:
    """The client public keys the server will accept, or a ValueError when there are none to accept."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"authorized_keys_dir {folder} is not a directory")
    keys = sorted(folder.glob(f"*{PUBLIC_SUFFIX}"))
    if not keys:
        raise ValueError(f"authorized_keys_dir {folder} holds no client public keys (*{PUBLIC_SUFFIX})")
    return keys


def endpoint_host(address: str) -> str:
    """The host part of a ``tcp://host:port`` endpoint; only TCP is supported (the bridge crosses machines)."""
    scheme, sep, rest = address.partition("://")
    if scheme != "tcp" or not sep:
        raise ValueError(f"bridge address must look like tcp://HOST:PORT, got {address!r}")
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not (port == "*" or port.isdigit()):
        raise ValueError(f"bridge address must look like tcp://HOST:PORT, got {address!r}")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(address: str) -> bool:
    """True only for a literal loopback address or ``localhost``; names are never resolved (DNS can lie)."""
    host = endpoint_host(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport_security(address: str, use_curve: bool, allow_plaintext: bool, role: str) -> None:
    """Raise a ValueError unless this address/key combination is allowed (see the module docstring)."""
    loopback = is_loopback(address)
    if use_curve:
        return
    if not allow_plaintext:
        raise ValueError(
            f"bridge {role} at {address} has no CURVE keys; generate them with `vivarl-keys DIR --name NAME` "
            "(or set allow_plaintext=true, which is accepted on a loopback address only)"
        )
    if not loopback:
        raise ValueError(
            f"bridge {role} refuses plaintext on non-loopback address {address}: anyone on the network could "
            "drive the arm. Configure CURVE keys (vivarl-keys) for remote links."
        )


def apply_client_curve(socket: zmq.Socket, client: CurveKeys, server_public: bytes) -> None:
    socket.curve_publickey = client.public
    socket.curve_secretkey = client.secret
    socket.curve_serverkey = server_public


def apply_server_curve(socket: zmq.Socket, server: CurveKeys) -> None:
    socket.curve_publickey = server.public
    socket.curve_secretkey = server.secret
    socket.curve_server = True


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"{what} file {file} does not exist (make keys with `vivarl-keys DIR --name NAME`)")
    return file
