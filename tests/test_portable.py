"""Packing hub models for air-gapped machines and loading them by hub id with no network."""

from __future__ import annotations

import shutil

import pytest

from conftest import synthetic_frames
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.models.detectors import create_detector
from lrihar.models.portable import list_packed, pack_models


@pytest.fixture
def hf_cache(tmp_path, tiny_grounding_dino):
    """A Hugging Face cache holding the tiny Grounding DINO as if downloaded as org/gd-tiny."""
    repo = tmp_path / "hf-cache" / "models--org--gd-tiny"
    sha = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_grounding_dino, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return tmp_path / "hf-cache"


def test_pack_then_load_by_hub_id_offline(hf_cache, tmp_path, monkeypatch):
    packed = pack_models(["org/gd-tiny"], tmp_path / "models", cache_dir=str(hf_cache))
    assert packed[0].path.name == "org__gd-tiny" and packed[0].files >= 4
    shutil.rmtree(hf_cache)  # the plant has no cache and no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LRIHAR_MODELS_DIR", str(tmp_path / "models"))
    detector = create_detector("grounding-dino", model="org/gd-tiny", box_threshold=0.0, text_threshold=0.0)
    assert len(detector(synthetic_frames(1)[0])) > 0


def test_list_verifies_every_file(hf_cache, tmp_path, capsys):
    pack_models(["org/gd-tiny"], tmp_path / "models", cache_dir=str(hf_cache))
    assert list_packed(tmp_path / "models")[0]["intact"]
    assert main(["models", "list", str(tmp_path / "models")]) == 0
    assert "org/gd-tiny" in capsys.readouterr().out
    (tmp_path / "models" / "org__gd-tiny" / "config.json").write_text("{}")  # corrupted in transit
    assert main(["models", "list", str(tmp_path / "models")]) == 1
    assert "CHANGED: config.json" in capsys.readouterr().out


def test_missing_model_and_bad_ids(hf_cache, tmp_path, capsys):
    with pytest.raises(BadInputError, match="not in the Hugging Face cache"):
        pack_models(["org/absent"], tmp_path / "models", cache_dir=str(hf_cache))
    with pytest.raises(BadInputError, match="not a Hugging Face model id"):
        pack_models(["../../etc"], tmp_path / "models", cache_dir=str(hf_cache))
    args = ["models", "pack", "org/absent", "-o", str(tmp_path / "m"), "--cache-dir", str(hf_cache)]
    assert main(args) == 2
    assert "--download" in capsys.readouterr().err
    assert not (tmp_path / "m" / "org__absent").exists()
