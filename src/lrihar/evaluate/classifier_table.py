"""Classifier comparison (paper Table 4): accuracy per post and line, call time p50 / p90.

Today the project's classifier is the template matcher; trained classifiers (the ViT-L teacher
and ViT-S student) join this table when their training lands.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from lrihar.evaluate.confusion import Confusion


def template_matcher_row(project, confusions: dict[str, Confusion], sample: int = 30) -> dict[str, Any]:
    """Accuracy from ``confusions`` and the per-crop call time (embed + match, batch 1)."""
    from lrihar.classify.auto import resolve_encoder
    from lrihar.classify.pipeline import matcher_for
    from lrihar.classify.templates import build_bank, class_folders
    from lrihar.crops import iter_crops
    from lrihar.models.encoders import Crop

    cfg = project.config
    store = project.store
    encoder, _ = resolve_encoder(store, cfg, class_folders(cfg))
    key = store.register_encoder(encoder.describe())
    start = time.perf_counter()
    bank = build_bank(store, encoder, key, class_folders(cfg))
    setup_s = time.perf_counter() - start
    matcher = matcher_for(bank, encoder, cfg)
    # with their landmarks: hand-pose and fusion (which auto may pick) read them
    crops = [Crop(img, None if row.world_landmarks is None else np.asarray(row.world_landmarks),
                  row.handedness) for row, img in itertools.islice(iter_crops(store), sample)]
    times = []
    for crop in crops[:1] + crops:  # the first call warms up
        t0 = time.perf_counter()
        matcher.assign(encoder.embed([crop]))
        times.append(1000 * (time.perf_counter() - t0))
    times = times[1:]
    return {
        "classifier": f"template matching ({encoder.name}, {len(bank.files)} templates)",
        "accuracy": {post: round(c.summary()["accuracy"], 4) for post, c in confusions.items()},
        "accuracy_without_ng": {post: round(c.summary()["accuracy_without_ng"], 4)
                                for post, c in confusions.items()},
        "training_s": round(setup_s, 2), "training_note": "no training: templates embedded",
        "call_ms_p50": round(float(np.percentile(times, 50)), 2) if times else None,
        "call_ms_p90": round(float(np.percentile(times, 90)), 2) if times else None,
        "timed_calls": len(times),
    }
