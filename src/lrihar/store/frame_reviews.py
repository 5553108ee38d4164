"""A person's verdict on a whole frame: ``empty`` means "looked, really no hand here".

Written by :mod:`lrihar.review.edits` (the review page's ``e``, a tool import of an image left with
no box), logged and undoable there. Read here by the stages that care: ``suggest`` leaves such frames
out, a detector set can take them as trusted background images (unlike frames the detector merely
found empty).
"""

from __future__ import annotations

from lrihar.store.connection import Connection


class FrameReviewsMixin(Connection):
    """The ``frame_reviews`` table."""

    def checked_frames(self) -> set[tuple[str, int]]:
        """(source uri, frame index) of every stored frame a person marked as holding no hand and
        that holds no box now (a box a person or a detector added since outranks the mark)."""
        cur = self.db.execute(
            "SELECT s.uri, r.frame_index FROM frame_reviews r"
            " JOIN frames f ON f.source_id = r.source_id AND f.frame_index = r.frame_index"
            " JOIN sources s ON s.id = r.source_id WHERE r.verdict = 'empty' AND NOT EXISTS"
            " (SELECT 1 FROM detections d WHERE d.source_id = r.source_id AND d.frame_index = r.frame_index"
            " AND d.rejected = 0)")
        return {(uri, int(index)) for uri, index in cur}
