"""On real pixels: the offline MobileNetV2 teacher and its distilled student beat the template
matcher on ASL letters (ground-truth crops, split by source photo as benchmarks/classifier_accuracy.py
does; five letters, 96 / 80 px inputs, 6 epochs and 2 cached teacher rounds to stay fast: ~40 s on
2 idle-ish cores, several minutes when the machine is heavily loaded).

The letters are those of A-H with at least two test photos (17 test crops, 112 training crops,
10 validation crops). Training is seeded, so a run repeats itself on one machine; another CPU or
thread count moves a crop or two (measured with 1 thread: teacher 0.88, student 0.76), hence floors
a few crops under the measured values and still well above the template matcher."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lrihar.project import Project

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _handsets import asl_imagefolder

LETTERS = ("B", "C", "F", "G", "H")
TEACHER_PX, STUDENT_PX = 96, 80


def _template_accuracy(train, test, classes: int) -> float:
    """The template matcher with 3 templates per letter (mobilenet-v2, λ = 0), mean of 5 draws."""
    from lrihar.classify.match import Matcher
    from lrihar.models.encoders import Crop, create_encoder

    encoder = create_encoder("mobilenet-v2")
    tv, qv = encoder.embed([Crop(i) for i in train.images]), encoder.embed([Crop(i) for i in test.images])
    accs = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        pick = np.concatenate([rng.choice(np.where(train.labels == c)[0], 3, replace=False)
                               for c in range(classes)])
        r = Matcher(tv[pick], train.labels[pick], classes, np.zeros(classes, np.float32)).assign(qv)
        accs.append(float((r.best_class == test.labels).mean()))
    return float(np.mean(accs))


def _onnx_accuracy(project, run: str, test) -> float:
    from lrihar.deploy.onnx_classifier import export_classifier
    from lrihar.models.classifiers import OnnxClassifier

    onnx = OnnxClassifier(export_classifier(project, run).deployed)
    return float((onnx.classify(test.images).label == test.labels).mean())


@pytest.mark.slow
def test_finetune_and_distill_beat_the_template_matcher_on_asl_letters(hands_dev, tmp_path):
    from lrihar.train.classifier_data import class_folders, load_data_folder, read_split
    from lrihar.train.distill import DistillConfig, distill
    from lrihar.train.finetune import FinetuneConfig, finetune

    data = asl_imagefolder(hands_dev / "asl_letters", tmp_path / "asl", LETTERS)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "lrihar.yaml").write_text("{}\n")
    project = Project.open(tmp_path / "p")
    sets = load_data_folder(data, 2 * TEACHER_PX)
    test = read_split(data / "test", class_folders(data / "train"), 4 * TEACHER_PX, False)
    assert len(sets.classes) == 5 and len(test) == 17
    templates = _template_accuracy(sets.train, test, len(sets.classes))
    finetune(project, FinetuneConfig(data=str(data), image_size=TEACHER_PX, epochs=6, batch=32),
             name="teacher", show_progress=False)
    student = distill(project, DistillConfig(teacher="teacher", image_size=STUDENT_PX, epochs=6, batch=32,
                                             rounds=2), name="student", show_progress=False)
    teacher_acc = _onnx_accuracy(project, "teacher", test)
    student_acc = _onnx_accuracy(project, "student", test)
    print(f"templates {templates:.3f}  teacher {teacher_acc:.3f}  student {student_acc:.3f}")
    # measured on 2 CPU cores, 2 threads, twice, identical (17 test crops): templates 0.471 (8/17),
    # teacher 0.824 (14/17), student 0.824 (14/17), both through their exported ONNX files
    assert teacher_acc >= max(0.64, templates + 0.15)  # 11/17
    assert student_acc >= max(0.64, templates + 0.15)
    assert student.unlabelled_crops == 0 and student.best_val_acc is not None
