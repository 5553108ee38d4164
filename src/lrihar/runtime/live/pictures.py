"""The annotated picture of a source's latest frame, drawn and JPEG-encoded on request (never on
the pipeline thread), at most ``fps_cap`` times a second per source, shared by every viewer."""

from __future__ import annotations

import threading
import time

from lrihar.runtime.live.state import SourceSlot


class Pictures:
    """JPEG of the latest frame per source, cached until a newer frame is due.

    Args:
        width: pictures wider than this are scaled down first (text stays legible).
        fps_cap: most encodings per source per second; requests in between get the cached one.
        quality: JPEG quality.
    """

    def __init__(self, width: int = 640, fps_cap: float = 10, quality: int = 80) -> None:
        self.width = width
        self.min_gap = 1.0 / fps_cap if fps_cap > 0 else 0.0
        self.quality = quality
        self._cache: dict[int, tuple[int, float, bytes]] = {}  # k -> (seq, when encoded, jpeg)
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.encoded = 0
        self.seconds = 0.0

    def jpeg(self, slot: SourceSlot) -> tuple[int, bytes] | None:
        """(frame counter, JPEG) of ``slot``'s latest frame; None before its first frame."""
        with self._guard:
            lock = self._locks.setdefault(slot.k, threading.Lock())
        with lock:  # one encoding per source at a time; other viewers wait and share it
            view, seq = slot.view, slot.seq
            if view is None:
                return None
            cached = self._cache.get(slot.k)
            now = time.monotonic()
            if cached is not None and (cached[0] == seq or now - cached[1] < self.min_gap):
                return cached[0], cached[2]
            data = self._encode(view)
            self._cache[slot.k] = (seq, now, data)
            self.encoded += 1
            self.seconds += time.monotonic() - now
            return seq, data

    def _encode(self, view) -> bytes:
        import cv2

        from lrihar.runtime.overlay import draw_view

        image = draw_view(view, self.width)
        # OpenCV rather than PIL: about twice as fast, and it lets go of the GIL the pipeline needs
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode the live picture as JPEG")
        return buf.tobytes()
