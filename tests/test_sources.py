"""Frame sources: decoding, sampling, bad files, streams over a real local HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_frames, write_video
from lrihar.errors import BadInputError
from lrihar.sources import ImageFolderSource, StreamSource, VideoFileSource, open_source, prefetch


def test_video_frames_keep_index_timestamp_and_pixels(clip):
    frames = list(open_source(clip))
    assert [f.index for f in frames] == list(range(30))
    assert frames[3].timestamp == pytest.approx(0.3)
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    assert frames[0].source_id == str(clip.resolve())
    # decoded frame 7 is the 7th generated frame, not a neighbour (lossy codec: compare nearest)
    generated = synthetic_frames(30)
    errors = [np.abs(frames[7].image.astype(int) - g).mean() for g in generated]
    assert int(np.argmin(errors)) == 7


def test_stride_keeps_original_indices(clip):
    assert [f.index for f in open_source(clip, stride=7)] == [0, 7, 14, 21, 28]


def test_fps_sampling_picks_first_frame_after_each_tick(clip):
    frames = list(open_source(clip, fps=2.5))  # 10 fps source: one frame per 0.4 s
    assert [f.index for f in frames] == [0, 4, 8, 12, 16, 20, 24, 28]


def test_image_folder_skips_and_reports_a_text_file_named_jpg(tmp_path):
    for i in range(3):
        Image.fromarray(synthetic_frames(3)[i]).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "readme.txt").write_text("ignored: not an image suffix")
    source = open_source(tmp_path)
    assert isinstance(source, ImageFolderSource)
    frames = list(source)
    assert [f.name.rsplit("/", 1)[-1] for f in frames] == ["img0.png", "img1.png", "img2.png"]
    assert [f.index for f in frames] == [0, 1, 2]  # sorted: img0, img1, img2, notes
    assert len(source.errors) == 1
    assert "notes.jpg" in source.errors[0].message and "unreadable image" in source.errors[0].message


def test_missing_path_and_unknown_type_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="no such file or folder"):
        open_source(tmp_path / "nope.mp4")
    (tmp_path / "data.xyz").write_text("x")
    with pytest.raises(BadInputError, match=r"unsupported file type '\.xyz'"):
        open_source(tmp_path / "data.xyz")


def test_zero_byte_video_is_a_source_error(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    source = open_source(tmp_path / "empty.mp4")
    assert isinstance(source, VideoFileSource)
    assert list(source) == []
    assert len(source.errors) == 1 and source.errors[0].index is None
    assert "cannot open" in source.errors[0].message


def test_truncated_mp4_cannot_be_opened_and_says_so(tmp_path, clip):
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])  # the moov atom is lost
    source = open_source(tmp_path / "cut.mp4")
    assert list(source) == [] and "cannot open" in source.errors[0].message


def test_truncated_mkv_keeps_the_frames_before_the_cut(tmp_path):
    mkv = write_video(tmp_path / "clip.mkv", synthetic_frames(30))
    data = mkv.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 6 // 10])
    source = open_source(tmp_path / "cut.mkv")
    frames = list(source)
    assert 5 < len(frames) < 30
    assert [f.index for f in frames] == list(range(len(frames)))
    assert len(source.errors) == 1 and "truncated or corrupt" in source.errors[0].message


@pytest.fixture
def http_server(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_stream_is_read_live(tmp_path, http_server):
    write_video(tmp_path / "live.mkv", synthetic_frames(12))
    source = open_source(f"{http_server}/live.mkv", stride=2)
    assert isinstance(source, StreamSource)
    frames = list(source)
    assert [f.index for f in frames] == [0, 2, 4, 6, 8, 10]
    assert all(f.source_id == f"{http_server}/live.mkv" for f in frames)
    assert source.errors == []


def test_unreachable_stream_retries_then_reports(http_server):
    source = StreamSource(f"{http_server}/missing.mkv", reconnects=1, reconnect_delay=0.01)
    assert list(source) == []
    assert len(source.errors) == 2  # first try and one reconnect
    assert all("cannot open" in e.message for e in source.errors)


def test_prefetch_preserves_order_and_reraises():
    assert list(prefetch(iter(range(100)), maxsize=2)) == list(range(100))

    def broken():
        yield 1
        raise RuntimeError("decoder died")

    out = []
    with pytest.raises(RuntimeError, match="decoder died"):
        for item in prefetch(broken()):
            out.append(item)
    assert out == [1]


def test_prefetch_stops_its_thread_when_abandoned():
    gen = prefetch(iter(range(10_000)), maxsize=2)
    assert next(gen) == 0
    gen.close()
    assert not [t for t in threading.enumerate() if t.name == "lrihar-decode"]


def test_expected_frames_match_what_sampling_yields(clip, tmp_path):
    for kwargs in ({}, {"stride": 7}, {"fps": 2.5}):
        source = open_source(clip, **kwargs)
        assert source.expected_frames() == len(list(open_source(clip, **kwargs)))
    for i in range(4):
        Image.fromarray(synthetic_frames(1)[0]).save(tmp_path / f"{i}.png")
    assert open_source(tmp_path).expected_frames() == 4
    assert StreamSource("rtsp://127.0.0.1:1/none").expected_frames() is None
