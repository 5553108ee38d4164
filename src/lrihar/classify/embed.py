"""The embedding stage of ``lrihar classify``: stored detections embedded once per encoder.

Crops are cut on demand from the original frames (:func:`lrihar.crops.iter_crops`) and their
embeddings committed to the store in batches, so an interrupted run resumes where it stopped.
A fusion encoder embeds each part under its own key (shared with the plain encoders) and
stores the parts side by side.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from lrihar.crops import iter_crops
from lrihar.models.encoders import Crop, Encoder
from lrihar.progress import progress_bar
from lrihar.sources import SourceError
from lrihar.store import Store

Embedder = Callable[..., int]
"""(store, encoder, key, padding, errors, show_progress, only=ids or None) -> crops embedded."""
"""Embeds the stored detections not yet embedded with an encoder: :func:`embed_detections`'s
signature (store, encoder, encoder key, padding, errors, show_progress) -> how many."""


def embed_detections(store: Store, encoder: Encoder, encoder_key: str, padding: float,
                     errors: list[SourceError], show_progress: bool = False,
                     only: set[int] | None = None) -> int:
    """Embed and store detections not yet embedded with this encoder; returns how many.

    ``only`` limits the work to these detection ids.
    """
    wanted = only if only is not None else {
        r[0] for r in store.db.execute("SELECT id FROM detections WHERE rejected = 0")}
    todo = wanted - store.embedded_detections(encoder_key)
    if not todo:
        return 0
    components = getattr(encoder, "components", None)
    if components:
        return _join_components(store, encoder, encoder_key, components, padding, errors, show_progress, todo)
    done = 0
    if encoder.uses_pixels:
        crops = iter_crops(store, padding, errors, only=todo)
    else:  # landmark geometry: no frame needs decoding
        crops = ((row, _NO_PIXELS) for row in store.detections() if row.id in todo)
    with progress_bar("embed", unit="crops", enabled=show_progress, total=len(todo)) as bar:
        while batch := list(itertools.islice(crops, encoder.batch_size)):
            items = [Crop(img, None if row.world_landmarks is None else np.asarray(row.world_landmarks),
                          row.handedness, None if row.landmarks is None else np.asarray(row.landmarks))
                     for row, img in batch]
            store.put_detection_embeddings(encoder_key, [row.id for row, _ in batch], encoder.embed(items))
            done += len(batch)
            bar.update(done)
    return done


_NO_PIXELS = np.zeros((0, 0, 3), dtype=np.uint8)


def _join_components(store: Store, encoder: Encoder, encoder_key: str, components: list[Encoder],
                     padding: float, errors: list[SourceError], show_progress: bool, todo: set[int]) -> int:
    """Fusion: embed each part under its own key (shared with the plain encoders, so nothing is
    embedded twice), then store the parts side by side under the fusion's key."""
    keys = []
    for part in components:
        keys.append(store.register_encoder(part.describe()))
        embed_detections(store, part, keys[-1], padding, errors, show_progress, only=todo)
    return store_joined_parts(store, encoder_key, keys, todo)


def store_joined_parts(store: Store, encoder_key: str, part_keys: list[str], todo: set[int]) -> int:
    """Store the parts' embeddings of the ``todo`` detections side by side under ``encoder_key``
    (those every part embedded); returns how many."""
    stored = [store.detection_embeddings(key) for key in part_keys]
    ids = np.array(sorted(todo), dtype=int)
    for part_ids, _ in stored:
        ids = np.intersect1d(ids, part_ids)
    if len(ids):
        joined = np.concatenate([vectors[np.isin(part_ids, ids)] for part_ids, vectors in stored], axis=1)
        store.put_detection_embeddings(encoder_key, ids.tolist(), joined)
    return len(ids)
