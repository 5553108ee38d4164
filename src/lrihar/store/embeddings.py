"""Cached embeddings of templates and detections, keyed by encoder configuration."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from lrihar.store.connection import Connection


class EmbeddingsMixin(Connection):
    """The ``encoders``, ``template_embeddings`` and ``detection_embeddings`` tables."""
    def register_encoder(self, description: dict[str, Any]) -> str:
        """A short stable key for an encoder configuration (its embeddings' cache key)."""
        text = json.dumps(description, sort_keys=True, default=str)
        key = hashlib.sha1(text.encode()).hexdigest()[:16]
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO encoders VALUES (?, ?)", (key, text))
        return key

    def template_embeddings(self, encoder_key: str, sha1s: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached template embeddings of these file hashes."""
        out = {}
        for sha, blob in self.db.execute(
            "SELECT sha1, vector FROM template_embeddings WHERE encoder_key=?", (encoder_key,)
        ):
            if sha in sha1s:
                out[sha] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_template_embeddings(self, encoder_key: str, items: dict[str, np.ndarray]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO template_embeddings VALUES (?, ?, ?)",
                [(sha, encoder_key, _blob(v)) for sha, v in items.items()],
            )

    def embedded_detections(self, encoder_key: str) -> set[int]:
        cur = self.db.execute("SELECT detection_id FROM detection_embeddings WHERE encoder_key=?",
                              (encoder_key,))
        return {r[0] for r in cur}

    def put_detection_embeddings(self, encoder_key: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO detection_embeddings VALUES (?, ?, ?)",
                [(int(i), encoder_key, _blob(v)) for i, v in zip(ids, vectors, strict=True)],
            )

    def detection_embeddings(self, encoder_key: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every detection embedded with this encoder, ordered by id."""
        rows = self.db.execute("SELECT detection_id, vector FROM detection_embeddings "
                               "WHERE encoder_key=? ORDER BY detection_id", (encoder_key,)).fetchall()
        if not rows:
            return np.zeros(0, dtype=int), np.zeros((0, 0), dtype=np.float32)
        ids = np.array([r[0] for r in rows])
        return ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()
