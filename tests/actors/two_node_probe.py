"""Run in its own process (Ray reads RAY_AUTH_MODE once per process): join the cluster, place arm1's actor,
and print where it landed as JSON for test_two_node_cluster.py."""

from __future__ import annotations

import json
import sys

import ray

from actors.robot_actor import ActorSettings, launch_robot_actors
from robot_io import RobotConfig, SimBoxConfig


def main(address: str, store_url: str) -> None:
    ray.init(address=address, log_to_driver=False)
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    robot = RobotConfig(type="sim_box", name="arm1", sim_box=SimBoxConfig(image_height=32, image_width=32))
    handles = launch_robot_actors([ActorSettings(robot=robot, store_url=store_url, task="t")])
    landed = ray.get(handles["arm1"].node_id.remote())
    ghost_error = ""
    try:
        launch_robot_actors(
            [ActorSettings(robot=RobotConfig(type="sim_box", name="arm9"), store_url=store_url, task="t")]
        )
    except RuntimeError as err:
        ghost_error = str(err)
    print(json.dumps({"nodes": nodes, "landed": landed, "ghost_error": ghost_error}))
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
