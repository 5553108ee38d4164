"""Matching maths on hand-computed arrays: eq. 1, class reduction, λ and NG, ties, parts."""

from __future__ import annotations

import numpy as np
import pytest

from lrihar.classes import NG_INDEX as NG
from lrihar.classify.calibrate import suggest_lambda, sweep
from lrihar.classify.match import Matcher, leave_one_out, similarity


def unit(*angles_deg):
    a = np.deg2rad(angles_deg)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_cosine_is_eq_1():
    a = np.array([[3.0, 4.0]]) / 5
    b = np.array([[1.0, 0.0], [0.0, 1.0], [-0.6, -0.8]])
    assert similarity(a, b) == pytest.approx(np.array([[0.6, 0.8, -1.0]]))


@pytest.mark.parametrize(
    ("lam", "expected"),
    [(0.5, 0), (np.cos(np.deg2rad(60)), 0), (0.51, NG)],  # score cos 60° = 0.5: at λ it is kept
)
def test_lambda_edge_is_inclusive(lam, expected):
    m = Matcher(unit(0), np.array([0]), 1, lambdas=lam)
    assert m.assign(unit(60)).label[0] == expected


def test_best_template_of_each_class_wins():
    templates = unit(0, 40, 90, 100)  # class 0: 0°, 40°; class 1: 90°, 100°
    m = Matcher(templates, np.array([0, 0, 1, 1]), 2, lambdas=0.0)
    r = m.assign(unit(35, 80))
    assert r.label.tolist() == [0, 1]
    assert r.score == pytest.approx([np.cos(np.deg2rad(5)), np.cos(np.deg2rad(10))])
    assert r.runner_up.tolist() == [1, 0]
    assert r.margin[0] == pytest.approx(np.cos(np.deg2rad(5)) - np.cos(np.deg2rad(55)))


def test_topk_mean_reduction():
    templates = unit(0, 10, 80, 90, 91)
    m = Matcher(templates, np.array([0, 0, 1, 1, 1]), 2, 0.0, reduce="topk-mean", k=2)
    scores = m.class_scores(unit(0))
    assert scores[0, 0] == pytest.approx((1 + np.cos(np.deg2rad(10))) / 2)
    assert scores[0, 1] == pytest.approx((np.cos(np.deg2rad(80)) + np.cos(np.deg2rad(90))) / 2)


def test_ties_go_to_the_first_class():
    m = Matcher(unit(0, 0), np.array([0, 1]), 2, 0.0)
    r = m.assign(unit(0))
    assert (r.label[0], r.runner_up[0], r.margin[0]) == (0, 1, 0.0)


def test_per_class_lambda():
    m = Matcher(unit(0, 90), np.array([0, 1]), 2, lambdas=np.array([0.99, 0.5]))
    assert m.assign(unit(10, 80)).label.tolist() == [NG, 1]


def test_one_template_and_a_class_without_templates():
    m = Matcher(unit(0), np.array([0]), 2, -1.0)
    r = m.assign(unit(0, 180))
    assert r.label.tolist() == [0, 0]  # class 1 has no templates: it can never win
    assert r.score.tolist() == pytest.approx([1.0, -1.0])
    assert np.isneginf(r.class_scores[:, 1]).all()
    assert np.isinf(r.margin).all()


def test_zero_templates_means_everything_is_ng():
    m = Matcher(np.zeros((0, 2)), np.zeros(0, int), 0, 0.5)
    assert m.assign(unit(0, 90)).label.tolist() == [NG, NG]


def test_parts_weighted_cosine_falls_back_to_the_part_both_have():
    # two parts of length 2: appearance (weight 0.25), pose (0.75)
    parts = [(2, 0.25), (2, 0.75)]
    template = np.concatenate([unit(0), unit(0)], axis=1)
    full = np.concatenate([unit(60), unit(0)], axis=1)  # appearance cos .5, pose cos 1
    no_pose = np.concatenate([unit(60), np.zeros((1, 2))], axis=1)
    sims = similarity(np.concatenate([full, no_pose]), template, parts)
    assert sims[:, 0] == pytest.approx([0.25 * 0.5 + 0.75 * 1.0, 0.5])


def test_leave_one_out_and_suggestion():
    vectors = unit(0, 5, 90, 95, 45)
    classes = np.array([0, 0, 1, 1, 0])
    best, score = leave_one_out(vectors, classes, 2)
    assert best.tolist() == [0, 0, 1, 1, 0]  # 45° is exactly between 5° ... and 90°: 40° vs 45°
    assert score[0] == pytest.approx(np.cos(np.deg2rad(5)))
    assert score[4] == pytest.approx(np.cos(np.deg2rad(40)))
    s = sweep("t", classes, best, score, np.array([0.0, 0.8, 1.0]))
    assert s.accuracy.tolist() == [1.0, 0.8, 0.0] and s.ng_rate.tolist() == [0.0, 0.2, 1.0]
    expected = np.floor(np.cos(np.deg2rad(40)) * 100) / 100  # the worst correct score, floored
    assert suggest_lambda(classes, best, score, keep=1.0) == pytest.approx(expected)


def test_an_empty_embedding_is_ng_even_at_lambda_zero():
    m = Matcher(unit(0, 90), np.array([0, 1]), 2, lambdas=0.0)
    r = m.assign(np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert r.label.tolist() == [NG, 0]
