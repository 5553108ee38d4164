"""Template classification accuracy on real hand crops, per encoder, with and without NG.

The gloves set's boxes are labelled gloved_hand / bare_hand. Templates: 10 per class from the
even-numbered images; queries: every box of the odd-numbered images (ground-truth boxes, so
this measures the classifier, not the detector). λ is the one `calibrate-lambda` suggests from
the templates alone. Averaged over 5 random template draws.

Encoders compared: the offline default (mobilenet-v2, appearance), hand-pose (landmark
geometry from MediaPipe run on each crop) and fusion (both, pose weight 0.5). A crop on which
MediaPipe finds no hand has no pose: hand-pose cannot label it (counted wrong), fusion falls
back to appearance.

Usage: python benchmarks/classify_accuracy.py  -> benchmarks/results/classify_accuracy.json
"""

from __future__ import annotations

import numpy as np

from _common import HANDS_DEV, load_gt, write_result
from lrihar.classify.calibrate import leave_one_out, suggest_lambda
from lrihar.classify.match import NG, Matcher
from lrihar.classify.templates import TemplateFile, template_crops
from lrihar.models.encoders import create_encoder
from lrihar.sources import read_image

CLASSES = ("gloved_hand", "bare_hand")


def main() -> None:
    import tempfile
    from pathlib import Path

    from PIL import Image

    root = HANDS_DEV / "gloves_roboflow"
    files, labels, image_index = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k, im in enumerate(load_gt("gloves_roboflow")):
            image = read_image(root / im["file"])
            for j, (box, cls) in enumerate(zip(im["hands"], im["hand_classes"], strict=True)):
                x1, y1, x2, y2 = (round(v) for v in box)
                if x2 - x1 < 4 or y2 - y1 < 4:
                    continue
                path = Path(tmp) / f"{k}_{j}.png"
                Image.fromarray(image[y1:y2, x1:x2]).save(path)
                files.append(TemplateFile(cls, path, ""))
                labels.append(CLASSES.index(cls))
                image_index.append(k)
        crops = template_crops(files, with_landmarks=True)
    labels = np.array(labels)
    first_half = np.array(image_index) % 2 == 0
    with_pose = np.array([c.world_landmarks is not None for c in crops])
    results = {"crops": len(crops), "crops_with_landmarks": int(with_pose.sum()),
               "landmark_coverage_by_class": {c: round(float(with_pose[labels == i].mean()), 3)
                                              for i, c in enumerate(CLASSES)},
               "encoders": {}}
    for name, options in [("mobilenet-v2", {}), ("hand-pose", {}), ("fusion", {"pose_weight": 0.5})]:
        vectors = create_encoder(name, **options).embed(crops)
        parts = create_encoder(name, **options).parts
        rows = []
        for seed in range(5):
            rng = np.random.default_rng(seed)
            t = np.concatenate([rng.choice(np.where(first_half & (labels == c))[0], 10, replace=False)
                                for c in (0, 1)])
            q = ~first_half
            best, score = leave_one_out(vectors[t], labels[t], 2, parts=parts)
            lam = suggest_lambda(labels[t], best, score)
            r = Matcher(vectors[t], labels[t], 2, lam, parts=parts).assign(vectors[q])
            accepted = r.label != NG
            rows.append({
                "lambda": lam,
                "accuracy_without_ng": float((r.best_class == labels[q]).mean()),
                "accuracy_outside_ng": float((r.label[accepted] == labels[q][accepted]).mean())
                if accepted.any() else 0.0,
                "ng_rate": float((~accepted).mean()),
            })
        mean = {k: round(float(np.mean([row[k] for row in rows])), 4) for k in rows[0]}
        results["encoders"][name] = mean
        print(f"{name:14s} {mean}", flush=True)
    print("wrote", write_result("classify_accuracy", results))


if __name__ == "__main__":
    main()
