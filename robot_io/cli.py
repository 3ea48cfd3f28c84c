"""Command-line entry points of robot_io (see ``[project.scripts]`` in pyproject.toml).

``vivarl-bridge``  serve an arm over the robot bridge, from ``configs/bridge.yaml`` plus Hydra overrides:
                   ``vivarl-bridge robot=so101 address=tcp://0.0.0.0:5555``
``vivarl-keys``    make a CURVE key pair for a bridge server or client: ``vivarl-keys keys --name server``
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from robot_io.config import BridgeServerConfig

log = logging.getLogger(__name__)

BRIDGE_SCHEMA = "bridge_schema"


# -- vivarl-bridge ----------------------------------------------------------------------------------------------
def bridge_main() -> None:
    """Serve the configured arm until SIGINT/SIGTERM; the arm is held and disconnected on the way out."""
    # Registered before Hydra composes, so that configs/bridge.yaml can type-check every override against it.
    ConfigStore.instance().store(name=BRIDGE_SCHEMA, node=BridgeServerConfig)
    _bridge_app()


@hydra.main(version_base=None, config_path="../configs", config_name="bridge")
def _bridge_app(cfg: DictConfig) -> None:
    from robot_io.bridge import BridgeServer, make_server_teleoperator
    from robot_io.factory import make_raw_robot

    config: BridgeServerConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    robot = make_raw_robot(config.robot)
    teleoperator = make_server_teleoperator(config.robot, robot) if config.teleop else None
    server = BridgeServer(config, robot, teleoperator)

    def stop(signum: int, _frame: object) -> None:
        log.info("bridge server stopping on signal %s", signal.Signals(signum).name)
        server.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info(
        "serving %s arm '%s' (teleoperator: %s)",
        config.robot.type,
        config.robot.name,
        type(teleoperator).__name__ if teleoperator is not None else "none",
    )
    server.serve_forever()
    log.info("bridge server stopped: %s", server.stats)


# -- vivarl-keys ------------------------------------------------------------------------------------------------
def keys_main(argv: Sequence[str] | None = None) -> int:
    from robot_io.bridge import generate_keys

    parser = argparse.ArgumentParser(
        prog="vivarl-keys",
        description="Make a CURVE key pair for the robot bridge: NAME.key (public, give it to the peer) and "
        "NAME.key_secret (private, stays on this machine).",
        epilog="Typical setup: on the arm PC `vivarl-keys keys --name server`; on the actor machine "
        "`vivarl-keys keys --name actor0`, then copy server.key to the actor machine and actor0.key into the "
        "server's authorized_keys_dir.",
    )
    parser.add_argument("directory", help="where to write the two files (created if missing)")
    parser.add_argument("--name", required=True, help="base name of the files, e.g. server or actor0")
    parser.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    args = parser.parse_args(argv)
    try:
        files = generate_keys(args.directory, args.name, overwrite=args.force)
    except (FileExistsError, ValueError) as exc:
        parser.error(str(exc))
    print(f"public key: {files.public}\nsecret key: {files.secret} (keep private; mode 600)")
    return 0
