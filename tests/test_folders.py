"""Folders of clips and images: each video its own source, each folder's images one source,
other files reported and skipped, `--recursive`, resume, and a changed image folder refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import synthetic_frames, tiny_gd_project, write_video
from lrihar.cli import main
from lrihar.errors import BadInputError
from lrihar.project import Project
from lrihar.sources import ImageFolderSource, VideoFileSource, expand_sources, open_source


def footage(root: Path) -> Path:
    """``root`` holding two 6-frame clips, one image, a text file, a hidden file, and a
    sub-folder with one more clip and one image."""
    root.mkdir(parents=True)
    write_video(root / "b_post.avi", synthetic_frames(6, seed=1))
    write_video(root / "a_post.mp4", synthetic_frames(6, seed=2))
    Image.fromarray(synthetic_frames(1, seed=3)[0]).save(root / "still.png")
    (root / "notes.txt").write_text("shift log, not footage")
    (root / ".DS_Store").write_bytes(b"\0\1")
    (root / "day2").mkdir()
    write_video(root / "day2" / "c_post.mkv", synthetic_frames(6, seed=4))
    Image.fromarray(synthetic_frames(1, seed=5)[0]).save(root / "day2" / "still2.jpg")
    return root


def test_a_folder_expands_to_its_clips_and_one_image_source(tmp_path):
    root = footage(tmp_path / "clips").resolve()
    flat = expand_sources([str(root)])
    assert flat.uris == [str(root), str(root / "a_post.mp4"), str(root / "b_post.avi")]
    assert flat.skipped == [str(root / "notes.txt")]  # the hidden file is clutter, not reported
    assert flat.not_entered == [str(root / "day2")]
    deep = expand_sources([str(root)], recursive=True)
    assert deep.uris == [*flat.uris, str(root / "day2"), str(root / "day2" / "c_post.mkv")]
    assert deep.not_entered == []
    # a file named again, directly or via its folder, stays one source
    again = expand_sources([str(root / "a_post.mp4"), str(root)])
    assert again.uris == [str(root / "a_post.mp4"), str(root), str(root / "b_post.avi")]
    kinds = [type(open_source(u)) for u in flat.uris]
    assert kinds == [ImageFolderSource, VideoFileSource, VideoFileSource]
    # the folder's image source holds its own images only: the sub-folder's are another source
    assert [Path(f.name).name for f in open_source(root)] == ["still.png"]


def test_a_folder_without_images_or_videos_is_bad_input(tmp_path):
    root = tmp_path / "docs"
    (root / "nested").mkdir(parents=True)
    (root / "readme.txt").write_text("x")
    write_video(root / "nested" / "clip.mp4", synthetic_frames(3))
    with pytest.raises(BadInputError, match=r"docs: no image or video files here; its sub-folders "
                                            r"are read with --recursive"):
        expand_sources([str(root)])
    assert expand_sources([str(root)], recursive=True).uris == [str((root / "nested" / "clip.mp4").resolve())]


def test_annotate_a_folder_of_clips_then_resume_then_recursive(tmp_path, tiny_grounding_dino, capsys):
    folder = footage(tmp_path / "clips")
    project = tiny_gd_project(tmp_path / "p", tiny_grounding_dino)
    out = tmp_path / "s.json"
    args = ["annotate", str(folder), "-p", str(project), "--no-progress", "--json", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "1 file(s) skipped: neither images nor videos" in err and "notes.txt" in err
    assert "day2" in err and "--recursive" in err
    summary = json.loads(out.read_text())
    assert summary["sources"] == 3 and summary["frames_read"] == 6 + 6 + 1
    assert summary["skipped_files"] == [str((folder / "notes.txt").resolve())]
    store = Project.open(project).store
    kinds = dict(store.db.execute("SELECT uri, kind FROM sources").fetchall())
    assert sorted(kinds.values()) == ["images", "video", "video"]
    assert store.counts()["frames"] == 13

    assert main(args) == 0  # the same command again resumes every source
    again = json.loads(out.read_text())
    assert again["frames_resumed"] == 13 and again["frames_read"] == 13
    assert store.counts()["frames"] == 13

    assert main([*args, "--recursive"]) == 0
    deep = json.loads(out.read_text())
    assert deep["sources"] == 5 and deep["frames_resumed"] == 13 and deep["frames_read"] == 13 + 6 + 1
    assert str((folder / "day2" / "c_post.mkv").resolve()) in {
        r[0] for r in store.db.execute("SELECT uri FROM sources")}
    assert store.counts()["frames"] == 20


def test_resume_refuses_an_image_folder_whose_files_changed(tmp_path, tiny_grounding_dino, capsys):
    folder = tmp_path / "stills"
    folder.mkdir()
    for name, seed in (("b.png", 1), ("c.png", 2)):
        Image.fromarray(synthetic_frames(1, seed=seed)[0]).save(folder / name)
    project = tiny_gd_project(tmp_path / "p", tiny_grounding_dino)
    assert main(["annotate", str(folder), "-p", str(project), "--no-progress"]) == 0
    db = Project.open(project).store.db
    before = db.execute("SELECT frame_index, name FROM frames ORDER BY 1").fetchall()
    # a.png sorts first: frame 0 would now be a.png, and b.png / c.png would be taken as done
    Image.fromarray(synthetic_frames(1, seed=3)[0]).save(folder / "a.png")
    assert main(["annotate", str(folder), "-p", str(project), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "its images changed since they were annotated" in err and "b.png" in err and "--redo" in err
    assert db.execute("SELECT frame_index, name FROM frames ORDER BY 1").fetchall() == before
    assert main(["annotate", str(folder), "-p", str(project), "--no-progress", "--redo"]) == 0
    names = [Path(n).name for (n,) in db.execute("SELECT name FROM frames ORDER BY frame_index")]
    assert names == ["a.png", "b.png", "c.png"]
