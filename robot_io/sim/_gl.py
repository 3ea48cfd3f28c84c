"""Pick MuJoCo's offscreen OpenGL backend before mujoco is imported.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, and then cannot switch. Actors and tests run
on headless machines (no X display), where the default GLFW backend fails, so we default to EGL (hardware or
Mesa's software EGL) and fall back to OSMesa when no EGL library can be loaded. A value the user set is respected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import importlib.util
import os


def _loadable(*names: str) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def choose_gl_backend() -> str:
    """Set ``MUJOCO_GL`` (and PyOpenGL's platform to match) if unset; return the backend in effect."""
    chosen = os.environ.get("MUJOCO_GL")
    if not chosen:
        if _loadable("libEGL.so.1", ctypes.util.find_library("EGL") or "libEGL.so"):
            chosen = "egl"
        elif _loadable(
            "libOSMesa.so.8", "libOSMesa.so.6", ctypes.util.find_library("OSMesa") or "libOSMesa.so"
        ):
            chosen = "osmesa"
        else:
            chosen = "egl"  # let MuJoCo raise its own, descriptive error when a renderer is created
        os.environ["MUJOCO_GL"] = chosen
    if chosen in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
        _load_triton_first()
    return chosen


def _load_triton_first() -> None:
    """Load triton's native library before Mesa's, if triton is installed.

    Mesa's software rasteriser loads its own LLVM into the process's global symbol scope when the first GL context
    is made. triton (imported later by torch/torchvision in the same process, as actors and test runs do) bundles
    another LLVM and would then bind to Mesa's copy and crash with a segmentation fault. Loaded first, triton keeps
    its own symbols. This costs about 0.15 s and is skipped when triton is absent.
    """
    if importlib.util.find_spec("triton") is None:
        return
    try:
        importlib.import_module("triton._C.libtriton")
    except (ImportError, OSError):
        return
