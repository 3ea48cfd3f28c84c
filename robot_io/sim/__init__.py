"""The MuJoCo box-assembly simulator (the project's embedded default arm) and its scripted expert.

Importing this package picks an offscreen OpenGL backend (see ``robot_io.sim._gl``) and imports MuJoCo;
``import robot_io`` alone never does.
"""

from robot_io.sim._gl import choose_gl_backend

choose_gl_backend()

from robot_io.sim.box_sim import ACTION_NAMES, STATE_NAMES, BoxAssemblySim  # noqa: E402
from robot_io.sim.expert import ScriptedExpert, run_expert_episode  # noqa: E402
from robot_io.sim.gym_env import BoxAssemblyEnv  # noqa: E402
from robot_io.sim.task import STAGES, TaskState  # noqa: E402

__all__ = [
    "ACTION_NAMES",
    "STAGES",
    "STATE_NAMES",
    "BoxAssemblyEnv",
    "BoxAssemblySim",
    "ScriptedExpert",
    "TaskState",
    "choose_gl_backend",
    "run_expert_episode",
]
