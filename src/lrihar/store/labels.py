"""Action labels per detection: the matcher's (auto), a trained classifier's (model) and a
person's (corrected)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lrihar.store.connection import Connection, now


class LabelsMixin(Connection):
    """The ``labels`` table (review actions live in :mod:`lrihar.review.edits`)."""
    def write_auto_labels(self, run_id: int, rows: Sequence[tuple]) -> int:
        """Store (detection_id, label, score, runner_up, margin, encoder_key, lambda) rows.

        The matcher's answer always lands in ``auto_label`` (and its score, runner-up, margin);
        ``label`` changes only where no person has corrected it. Returns how many labels were
        kept as corrected.
        """
        stamp = now()
        with self.transaction():
            self.db.executemany(
                "INSERT INTO labels (detection_id, label, score, runner_up, margin, encoder_key,"
                " lambda, provenance, run_id, at, auto_label) VALUES (?,?,?,?,?,?,?,'auto',?,?,?)"
                " ON CONFLICT(detection_id) DO UPDATE SET auto_label=excluded.auto_label,"
                " label=CASE WHEN labels.provenance='auto' THEN excluded.label ELSE labels.label END,"
                " score=excluded.score, runner_up=excluded.runner_up, margin=excluded.margin,"
                " encoder_key=excluded.encoder_key, lambda=excluded.lambda,"
                " run_id=excluded.run_id, at=excluded.at",
                [(*r, run_id, stamp, r[1]) for r in rows],
            )
            kept = self.db.execute("SELECT COUNT(*) FROM labels WHERE provenance='corrected'").fetchone()
        return int(kept[0])

    def write_model_labels(self, run_id: int, rows: Sequence[tuple]) -> int:
        """Store a trained classifier's (detection_id, label, score, runner_up, margin, model_key)
        rows with provenance 'model'.

        As with the matcher's labels, the answer lands in ``auto_label`` and ``label`` changes only
        where no person corrected it; a later template ``classify`` leaves 'model' labels alone.
        Returns how many labels were kept as corrected.
        """
        stamp = now()
        with self.transaction():
            self.db.executemany(
                "INSERT INTO labels (detection_id, label, score, runner_up, margin, encoder_key,"
                " provenance, run_id, at, auto_label) VALUES (?,?,?,?,?,?,'model',?,?,?)"
                " ON CONFLICT(detection_id) DO UPDATE SET auto_label=excluded.auto_label,"
                " label=CASE WHEN labels.provenance='corrected' THEN labels.label ELSE excluded.label END,"
                " provenance=CASE WHEN labels.provenance='corrected' THEN 'corrected' ELSE 'model' END,"
                " score=excluded.score, runner_up=excluded.runner_up, margin=excluded.margin,"
                " encoder_key=excluded.encoder_key, lambda=NULL, run_id=excluded.run_id, at=excluded.at",
                [(*r, run_id, stamp, r[1]) for r in rows],
            )
            kept = self.db.execute("SELECT COUNT(*) FROM labels WHERE provenance='corrected'").fetchone()
        return int(kept[0])

    def labels(self, provenance: str | None = None) -> dict[int, dict[str, Any]]:
        """Current label per detection id (optionally only 'auto', 'model' or 'corrected' ones)."""
        sql = ("SELECT detection_id, label, score, runner_up, margin, lambda, provenance, auto_label"
               " FROM labels")
        params: tuple = ()
        if provenance:
            sql += " WHERE provenance=?"
            params = (provenance,)
        return {r[0]: {"label": r[1], "score": r[2], "runner_up": r[3], "margin": r[4],
                       "lambda": r[5], "provenance": r[6], "auto_label": r[7]}
                for r in self.db.execute(sql, params)}
