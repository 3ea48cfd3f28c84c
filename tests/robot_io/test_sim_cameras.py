"""The simulator's one-pass camera strip: the same pixels as rendering each camera alone, one read a step."""

from __future__ import annotations

import numpy as np
import pytest

from robot_io.config import SimBoxConfig
from robot_io.sim import BoxAssemblySim
from robot_io.sim.cameras import CameraStrip

mujoco = pytest.importorskip("mujoco")


def test_the_strip_renders_each_camera_as_mujocos_own_renderer_does():
    sim = BoxAssemblySim(SimBoxConfig(cameras=["front", "top", "wrist"], image_height=48, image_width=40))
    sim.connect()
    try:
        action = sim.start_episode(seed=5).state[:5].copy()
        for _ in range(3):
            action += np.array([0.01, 0.0, -0.01, 0.0, 0.0], dtype=np.float32)
            sim.send_action(action)
        observation = sim.get_observation()
        with mujoco.Renderer(sim.model, 48, 40) as renderer:
            for camera in ("front", "top", "wrist"):
                renderer.update_scene(sim.data, camera=camera)
                alone = renderer.render()
                assert observation.images[camera].shape == (48, 40, 3)
                np.testing.assert_array_equal(observation.images[camera], alone, err_msg=camera)
        # Distinct views: a strip that read one viewport for every camera would fail here.
        assert not np.array_equal(observation.images["front"], observation.images["wrist"])
    finally:
        sim.disconnect()


def test_a_framebuffer_too_narrow_for_the_strip_is_named():
    sim = BoxAssemblySim(SimBoxConfig(cameras=["front"], image_height=32, image_width=32))
    width = sim.model.vis.global_.offwidth
    with pytest.raises(ValueError, match="offscreen framebuffer of at least"):
        CameraStrip(sim.model, ["front", "top", "wrist"], 32, width)


def test_a_closed_strip_refuses_to_render():
    sim = BoxAssemblySim(SimBoxConfig(cameras=["top"], image_height=32, image_width=32))
    strip = CameraStrip(sim.model, ["top"], 32, 32)
    strip.close()
    strip.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="after close"):
        strip.render(sim.data)


def test_anti_aliasing_is_the_configs_and_a_negative_count_is_refused():
    assert BoxAssemblySim(SimBoxConfig()).model.vis.quality.offsamples == 0
    assert BoxAssemblySim(SimBoxConfig(render_samples=4)).model.vis.quality.offsamples == 4
    with pytest.raises(ValueError, match="render_samples is -1"):
        BoxAssemblySim(SimBoxConfig(render_samples=-1))
