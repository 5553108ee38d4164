"""An annotated MP4 per source: every processed frame with boxes, track ids, labels and the
checklist (a frame observer, not an item sink)."""

from __future__ import annotations

from pathlib import Path

from lrihar.naming import safe_file_name
from lrihar.runtime.overlay import draw_view
from lrihar.runtime.pipeline import FrameView
from lrihar.videowriter import VideoWriter


class AnnotatedVideo:
    """Writes ``<folder>/<source name>.mp4`` for each source (one file when there is one source
    and ``path`` ends in a video suffix).

    Args:
        path: an ``.mp4`` file (single source) or a folder.
        fps: frame rate of the written file.
        width: scale frames down to this width first (None: full size).
    """

    def __init__(self, path: str | Path, fps: int = 25, width: int | None = None) -> None:
        self.path = Path(path)
        self.name = f"video {self.path}"
        self.fps, self.width = fps, width
        self._writers: dict[str, VideoWriter] = {}

    def __call__(self, view: FrameView) -> None:
        writer = self._writers.get(view.source)
        if writer is None:
            writer = self._writers[view.source] = VideoWriter(self._file_for(view.source), self.fps)
        writer.write(draw_view(view, self.width))

    def _file_for(self, source: str) -> Path:
        if self.path.suffix.lower() in (".mp4", ".mkv", ".mov", ".avi") and not self._writers:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self.path
        folder = self.path.with_suffix("") if self.path.suffix else self.path
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{safe_file_name(Path(source).stem or source)}.mp4"

    def emit(self, item) -> None:
        """Items are not drawn here; the checklist comes with each frame."""

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
