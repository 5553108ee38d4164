"""Trained crop classifiers at run time: exported ONNX models in ONNX Runtime, no torch.

Example:
    >>> clf = OnnxClassifier("proj/models/classifier/student-1/export/classifier-128.onnx")  # doctest: +SKIP
    >>> result = clf.classify([crop])  # doctest: +SKIP
    >>> clf.classes[result.label[0]], result.score[0]  # doctest: +SKIP
"""

from __future__ import annotations

from lrihar.models.classifiers.onnx_runtime import ClassifierResult, OnnxClassifier

__all__ = ["ClassifierResult", "OnnxClassifier"]
