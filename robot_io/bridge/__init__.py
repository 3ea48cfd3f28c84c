"""The robot bridge: an arm's control PC serves its Robot over ZeroMQ, the actor drives it from another machine.

``BridgeServer`` (run by ``vivarl-bridge``) owns the arm behind its own safety layer; ``BridgeClient`` is the
actor's ``Robot`` for it, and ``BridgeClient.teleoperator()`` the server-side teleoperator for human takeover.
Links are CURVE-encrypted and authenticated with key files from ``generate_keys`` (``vivarl-keys``); the wire
format is in ``robot_io.bridge.wire``.
"""

from robot_io.bridge.client import BridgeClient, BridgeTeleoperator, ServerInfo
from robot_io.bridge.keys import KeyFiles, generate_keys
from robot_io.bridge.server import BridgeServer, BridgeServerStats, make_server_teleoperator
from robot_io.bridge.wire import PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_VERSION",
    "BridgeClient",
    "BridgeServer",
    "BridgeServerStats",
    "BridgeTeleoperator",
    "KeyFiles",
    "ServerInfo",
    "generate_keys",
    "make_server_teleoperator",
]
