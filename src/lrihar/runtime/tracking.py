"""Hand tracks per source: ByteTrack from Roboflow's ``trackers`` package behind a small interface.

supervision 0.31 removed ``sv.ByteTrack``; ``trackers`` carries it on. Its id counter has been
process-wide in some releases, so ids are renumbered here per source (1, 2, ...): two cameras
never share a track id by accident, and a source's ids do not depend on what else runs.
"""

from __future__ import annotations

import numpy as np
import supervision as sv


class HandTracker:
    """Tracks the hands of one source.

    Args:
        frame_rate: the source's frames per second (ByteTrack's motion model and buffer use it).
        lost_track_s: a track unseen this long is dropped.
        activation: detections below this confidence never start a track.
        min_frames: frames a track needs before it gets an id.
    """

    def __init__(self, frame_rate: float = 30.0, lost_track_s: float = 1.0, activation: float = 0.25,
                 min_frames: int = 1) -> None:
        from trackers import ByteTrackTracker

        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(lost_track_s * frame_rate)), frame_rate=frame_rate,
            track_activation_threshold=activation, minimum_consecutive_frames=min_frames,
            high_conf_det_threshold=max(activation, 0.5))
        self._local: dict[int, int] = {}

    def update(self, detections: sv.Detections) -> sv.Detections:
        """``detections`` with ``tracker_id`` set (per-source ids from 1; -1 = not yet confirmed)."""
        if detections.confidence is None:
            detections.confidence = np.ones(len(detections), np.float32)
        tracked = self._tracker.update(detections)
        if tracked.tracker_id is None:
            tracked.tracker_id = np.full(len(tracked), -1, int)
        ids = [self._local_id(int(t)) for t in tracked.tracker_id]
        tracked.tracker_id = np.array(ids, dtype=int)
        return tracked

    def _local_id(self, global_id: int) -> int:
        if global_id < 0:
            return -1
        if global_id not in self._local:
            self._local[global_id] = len(self._local) + 1
        return self._local[global_id]
