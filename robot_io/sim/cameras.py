"""All of the simulator's cameras in one offscreen pass.

Each camera is rendered into its own viewport of one strip, side by side, and the strip is read back once. On a
machine without a GPU (Mesa's software GL) the read-back, which waits for the rasteriser, costs more than drawing
a 64x64 view: one read a step instead of one per camera made the simulator with its three default cameras 1.2x
as fast (benchmarks/bench_sim.py), with pixels identical to rendering them one by one
(tests/robot_io/test_sim_cameras.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from robot_io.sim import _gl

_gl.choose_gl_backend()
import mujoco  # noqa: E402 - the GL backend must be chosen before mujoco is imported
from mujoco.rendering.classic import gl_context  # noqa: E402

log = logging.getLogger(__name__)


class CameraStrip:
    """Renders the named fixed cameras of ``model`` at ``height`` x ``width`` each; ``close`` frees the GL context.

    The model's offscreen framebuffer must be at least ``len(cameras) * width`` wide (``scene.build_scene_xml``
    sizes it so).
    """

    def __init__(
        self, model: mujoco.MjModel, cameras: Sequence[str], height: int, width: int, max_geom: int = 10000
    ) -> None:
        if not cameras:
            raise ValueError("CameraStrip needs at least one camera")
        strip_width = len(cameras) * width
        buffer = model.vis.global_
        if strip_width > buffer.offwidth or height > buffer.offheight:
            raise ValueError(
                f"{len(cameras)} cameras of {height}x{width} need an offscreen framebuffer of at least "
                f"{strip_width}x{height}; the model's is {buffer.offwidth}x{buffer.offheight} "
                "(<visual><global offwidth=... offheight=.../>)"
            )
        self._model = model
        self._height, self._width = height, width
        self._names = list(cameras)
        self._cameras = []
        for name in self._names:
            camera = mujoco.MjvCamera()
            camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
            camera.fixedcamid = model.camera(name).id
            self._cameras.append(camera)
        self._option = mujoco.MjvOption()
        self._perturb = mujoco.MjvPerturb()
        self._scene = mujoco.MjvScene(model=model, maxgeom=max_geom)
        self._gl = gl_context.GLContext(strip_width, height)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150.value)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._context)
        self._viewports = [mujoco.MjrRect(i * width, 0, width, height) for i in range(len(self._names))]
        self._strip_rect = mujoco.MjrRect(0, 0, strip_width, height)
        self._pixels = np.empty((height, strip_width, 3), dtype=np.uint8)

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """Camera name -> its (height, width, 3) uint8 image of ``data``'s current state (fresh arrays)."""
        if self._context is None:
            raise RuntimeError("CameraStrip.render after close")
        self._gl.make_current()
        for camera, viewport in zip(self._cameras, self._viewports, strict=True):
            mujoco.mjv_updateScene(
                self._model,
                data,
                self._option,
                self._perturb,
                camera,
                mujoco.mjtCatBit.mjCAT_ALL,
                self._scene,
            )
            mujoco.mjr_render(viewport, self._scene, self._context)
        mujoco.mjr_readPixels(self._pixels, None, self._strip_rect, self._context)
        # OpenGL's rows run bottom-up.
        upright = self._pixels[::-1]
        w = self._width
        return {name: upright[:, i * w : (i + 1) * w].copy() for i, name in enumerate(self._names)}

    def close(self) -> None:
        context, gl, self._context, self._gl = self._context, self._gl, None, None
        try:
            if context is not None:
                gl.make_current()
                context.free()
        except Exception as err:  # noqa: BLE001 - nothing left to recover: the context goes either way
            log.debug("freeing the camera strip's MuJoCo context: %s", err)
        finally:
            try:
                if gl is not None:
                    gl.free()
            except Exception as err:  # noqa: BLE001
                # EGL refuses to destroy a context still current on another thread (an actor's episode thread),
                # and at interpreter exit it may already be torn down; the process frees it when it ends.
                log.debug("freeing the camera strip's GL context: %s", err)
