"""Every registered encoder honours the embedding contract; the offline default is the real one."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import synthetic_frames
from lrihar.errors import BadInputError
from lrihar.models.encoders import Crop, create_encoder, list_encoders
from lrihar.models.encoders.hand_pose import pose_descriptor
from lrihar.models.encoders.mobilenet import packaged_weights


def hand_landmarks(seed: int = 0) -> np.ndarray:
    """A plausible hand: wrist at origin, five fingers of four joints fanning upwards."""
    rng = np.random.default_rng(seed)
    pts = [np.zeros(3)]
    for f in range(5):
        angle = np.deg2rad(-40 + 20 * f)
        direction = np.array([np.sin(angle), -np.cos(angle), 0.0])
        base = direction * 0.03
        for j in range(4):
            pts.append(base + direction * 0.02 * j + rng.normal(0, 0.002, 3))
    return np.array(pts, dtype=np.float32) * 1.0


@pytest.fixture
def encoder_factory(tiny_encoders):
    def build(name: str):
        if name in tiny_encoders:
            return create_encoder(name, model=str(tiny_encoders[name]))
        if name == "fusion":
            return create_encoder(name, appearance="clip", pose_weight=0.5,
                                  appearance_options={"model": str(tiny_encoders["clip"])})
        return create_encoder(name)

    return build


@pytest.mark.parametrize("name", list_encoders())
def test_embedding_contract(name, encoder_factory):
    encoder = encoder_factory(name)
    images = [synthetic_frames(1, 48, 64)[0], synthetic_frames(1, 100, 30, seed=2)[0]]
    crops = [Crop(images[0], hand_landmarks(0), "Right"), Crop(images[1], hand_landmarks(1), "Left")]
    vectors = encoder.embed(crops)
    assert vectors.shape == (2, encoder.dim) and vectors.dtype == np.float32
    offset = 0
    for length, _weight in encoder.parts:  # each part is unit length (or empty)
        norms = np.linalg.norm(vectors[:, offset:offset + length], axis=1)
        assert np.allclose(norms, 1.0, atol=1e-5)
        offset += length
    assert offset == encoder.dim
    # deterministic and batch-independent
    assert np.allclose(encoder.embed(crops[:1]), vectors[:1], atol=1e-5)
    assert encoder.embed([]).shape == (0, encoder.dim)
    assert encoder.describe()["encoder"] == name


def test_offline_default_loads_the_real_packaged_imagenet_weights():
    path = packaged_weights()
    # torchvision names weight files by the first hex digits of their SHA-256
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("b0353104")
    encoder = create_encoder("mobilenet-v2")
    top = encoder.imagenet_top(np.full((224, 224, 3), 128, np.uint8), k=5)
    assert len(top) == 5 and 0 < top[0][1] <= 1


def test_offline_default_onnx_runtime_matches_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("LRIHAR_CACHE", str(tmp_path))
    crops = synthetic_frames(4, 80, 60)
    torch_vectors = create_encoder("mobilenet-v2", runtime="torch").embed(crops)
    onnx_vectors = create_encoder("mobilenet-v2", runtime="onnx").embed(crops)
    assert np.abs(torch_vectors - onnx_vectors).max() < 1e-4
    assert list(tmp_path.glob("*.onnx"))  # exported once, cached


def test_features_separate_different_images():
    encoder = create_encoder("mobilenet-v2")
    frames = synthetic_frames(3, 96, 96)
    noise = np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    v = encoder.embed([frames[0], frames[1], noise])
    assert v[0] @ v[1] > v[0] @ v[2]  # the same scene beats random noise


def test_hand_pose_is_invariant_to_scale_and_mirrors_left_hands():
    right = hand_landmarks()
    left = right * np.array([-1, 1, 1], dtype=np.float32)
    a = pose_descriptor(right, "Right")
    assert np.allclose(a, pose_descriptor(right * 1.7 + 0.3, "Right"), atol=1e-5)
    assert np.allclose(a, pose_descriptor(left, "Left"), atol=1e-5)
    curled = right.copy()
    curled[8] = right[5]  # index fingertip folded back to its knuckle
    assert not np.allclose(a, pose_descriptor(curled, "Right"), atol=1e-2)


def test_fingertip_distances_tell_a_pinch_from_an_open_hand():
    from lrihar.models.encoders.hand_pose import fingertip_distances

    open_hand = hand_landmarks()
    pinch = open_hand.copy()
    pinch[4] = open_hand[8]  # thumb tip on the index tip
    assert fingertip_distances(pinch)[0] == 0 < fingertip_distances(open_hand)[0]  # pair (4, 8) first

    def cos(tip_weight: float) -> float:
        a, b = (pose_descriptor(p, "Right", tip_weight=tip_weight) for p in (open_hand, pinch))
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cos(3.0) < cos(0.0) - 0.01  # the distances widen the gap the coordinates leave


def test_hand_pose_without_landmarks_matches_nothing():
    v = create_encoder("hand-pose").embed([Crop(np.zeros((8, 8, 3), np.uint8))])
    assert not v.any()


def test_fusion_without_landmarks_leaves_the_pose_part_empty(encoder_factory):
    fusion = encoder_factory("fusion")
    v = fusion.embed([Crop(synthetic_frames(1)[0])])
    a_dim = fusion.parts[0][0]
    assert np.linalg.norm(v[0, :a_dim]) == pytest.approx(1.0, abs=1e-5) and not v[0, a_dim:].any()


def test_bad_encoder_settings_are_bad_input():
    with pytest.raises(BadInputError, match="unknown encoder 'resnet'"):
        create_encoder("resnet")
    with pytest.raises(BadInputError, match="pose_weight"):
        create_encoder("fusion", pose_weight=2.0)
    with pytest.raises(BadInputError, match="runtime"):
        create_encoder("mobilenet-v2", runtime="tensorrt")
