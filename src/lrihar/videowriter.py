"""Encode RGB frames as a video file (PyAV): for rendered previews, test and benchmark clips."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: int = 25, crf: int = 18) -> Path:
    """Write ``frames`` (RGB ``uint8``, all one size) to ``path``; returns the path.

    H.264 where the FFmpeg build has it (B-frames off so frame timestamps stay in order),
    MPEG-4 Part 2 otherwise. The container follows the suffix (mp4, mkv, ...).
    """
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": str(crf), "preset": "veryfast", "bf": "0"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path
