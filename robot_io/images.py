"""The one rule by which a camera frame is fitted to another size anywhere in vivarl: letterboxing.

The frame is scaled to fit inside the target, keeping its aspect ratio, and centred on black padding; nothing is
cropped, so an item at the edge of the view stays in it, and a 4:3 camera is never squashed into a square. The
LeRobot adapter applies it when a frame is captured (so replay, and the LeRobotDataset export, hold letterboxed
frames of the configured size), and the policy and the value models apply it again to their own input sizes.
Choosing a stored size with the camera's own aspect ratio (e.g. 96x128 for 640x480) stores no padding at all.
"""

from __future__ import annotations

import numpy as np


def letterbox_geometry(src_h: int, src_w: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(new_h, new_w, top, left): the scaled frame's size and where it sits inside the ``height`` x ``width``
    target."""
    if min(src_h, src_w, height, width) < 1:
        raise ValueError(f"image sizes must be positive, got {src_h}x{src_w} -> {height}x{width}")
    scale = min(height / src_h, width / src_w)
    new_h = max(1, min(height, round(src_h * scale)))
    new_w = max(1, min(width, round(src_w * scale)))
    return new_h, new_w, (height - new_h) // 2, (width - new_w) // 2


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A uint8 (H, W, 3) frame fitted to (height, width, 3) by ``letterbox_geometry``; always a new array
    (cameras may hand out a buffer they later overwrite, and observations are kept)."""
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    import cv2

    new_h, new_w, top, left = letterbox_geometry(src_h, src_w, height, width)
    interpolation = cv2.INTER_AREA if new_h < src_h or new_w < src_w else cv2.INTER_LINEAR
    scaled = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interpolation)
    out = np.zeros((height, width, image.shape[2]), dtype=image.dtype)
    out[top : top + new_h, left : left + new_w] = scaled
    return out
