"""Encode RGB frames as a video file (PyAV): annotated run videos, previews, test and benchmark clips."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


class VideoWriter:
    """Frames in, one at a time; ``close()`` (or the ``with`` block) finishes the file.

    H.264 where the FFmpeg build has it (B-frames off so frame timestamps stay in order),
    MPEG-4 Part 2 otherwise. The container follows the suffix (mp4, mkv, ...). Every frame must
    have the size of the first.
    """

    def __init__(self, path: str | Path, fps: int = 25, crf: int = 18) -> None:
        import av

        self.path = Path(path)
        self.fps, self.crf = fps, crf
        self._container = av.open(str(self.path), "w")
        self._stream = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        if self._stream is None:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self._stream = self._container.add_stream(codec, rate=self.fps)
            self._stream.height, self._stream.width = frame.shape[:2]
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self._stream.options = {"crf": str(self.crf), "preset": "veryfast", "bf": "0"}
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: int = 25, crf: int = 18) -> Path:
    """Write ``frames`` (RGB ``uint8``, all one size) to ``path``; returns the path."""
    with VideoWriter(path, fps, crf) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)
