"""Frame sources: video files, image folders and files, RTSP/HTTP streams and cameras.

Every source yields :class:`Frame` objects. A frame that cannot be decoded, or a file that cannot
be opened, is recorded in ``source.errors`` and skipped, so one bad input never stops a run.

Example:
    >>> from lrihar.sources import open_source
    >>> src = open_source("clips/post01.mp4", stride=5)  # doctest: +SKIP
    >>> for frame in src:  # doctest: +SKIP
    ...     print(frame.index, frame.timestamp, frame.image.shape)
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from lrihar.credentials import mask_text
from lrihar.errors import BadInputError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""Largest image (width × height) read unless told otherwise: PIL's own default limit."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        source_id: the source's URI (absolute path or URL).
        index: position of the frame in its source (decoded frame number, or image order).
        timestamp: seconds from the start of the source.
        image: RGB ``uint8`` array of shape (H, W, 3).
        name: path of the image file for image sources, else None.
    """

    source_id: str
    index: int
    timestamp: float
    image: np.ndarray = field(repr=False)
    name: str | None = None


@dataclass(frozen=True)
class SourceError:
    """A problem met while reading a source; ``index`` is None when the whole source failed."""

    source_id: str
    index: int | None
    message: str


class FrameSource:
    """Base class: iterate to get frames; problems accumulate in ``errors``."""

    kind = "base"

    def __init__(self, uri: str, stride: int = 1, fps: float | None = None) -> None:
        self.open_uri = uri  # what is opened: a stream URL with its password, if it has one
        self.uri = mask_text(uri)  # what frames, errors, the store and every display name
        self.stride = stride
        self.fps = fps
        self.errors: list[SourceError] = []
        self.frames_seen = 0

    def _error(self, index: int | None, message: str) -> None:
        self.errors.append(SourceError(self.uri, index, mask_text(message)))

    def _decode(self) -> Iterator[Frame]:
        raise NotImplementedError

    def expected_frames(self) -> int | None:
        """How many frames sampling will keep, where the source says (None for live streams)."""
        total = self._frame_count()
        if total is None:
            return None
        if self.fps is not None:
            rate = self._frame_rate()
            return total if rate is None else max(1, math.ceil(total * min(1.0, self.fps / rate)))
        return math.ceil(total / self.stride)

    def _frame_count(self) -> int | None:
        return None

    def _frame_rate(self) -> float | None:
        return None

    def __iter__(self) -> Iterator[Frame]:
        next_tick = 0.0
        for frame in self._decode():
            self.frames_seen += 1
            if self.fps is not None:
                # Keep the first frame at or after each 1/fps tick: robust to variable frame rate.
                if frame.timestamp + 1e-9 < next_tick:
                    continue
                next_tick = (math.floor(frame.timestamp * self.fps + 1e-9) + 1) / self.fps
            elif frame.index % self.stride:
                continue
            yield frame


class VideoFileSource(FrameSource):
    """A video file decoded with PyAV; corrupt packets are counted and skipped."""

    kind = "video"

    def _decode(self) -> Iterator[Frame]:
        yield from _decode_container(self, self.open_uri)

    def _stream_info(self) -> tuple[int | None, float | None]:
        import av

        try:
            with av.open(self.open_uri) as container:
                stream = container.streams.video[0]
                rate = float(stream.average_rate) if stream.average_rate else None
                frames = stream.frames or None
                if frames is None and container.duration and rate:
                    frames = round(container.duration / av.time_base * rate)
                return frames, rate
        except (av.error.FFmpegError, OSError, IndexError):
            return None, None  # decoding reports the problem properly

    def _frame_count(self) -> int | None:
        return self._stream_info()[0]

    def _frame_rate(self) -> float | None:
        return self._stream_info()[1]


def _decode_container(source: FrameSource, url: str, options: dict | None = None,
                      fmt: str | None = None, start_index: int = 0,
                      timeout: float | tuple[float, float] = 10.0) -> Iterator[Frame]:
    import av

    try:
        container = av.open(url, format=fmt, options=options or {}, timeout=timeout)
    except (av.error.FFmpegError, OSError) as exc:
        source._error(None, f"cannot open: {exc}")
        return
    with container:
        if not container.streams.video:
            source._error(None, "no video stream")
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        index = start_index
        last_ts: float | None = None
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                source._error(index, f"demux failed, rest of file unreadable: {exc}")
                break
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                source._error(index, f"corrupt packet skipped: {exc}")
                continue
            for vframe in decoded:
                ts = float(vframe.time) if vframe.time is not None else index / rate
                yield Frame(url, index, ts, vframe.to_ndarray(format="rgb24"))
                last_ts = ts
                index += 1
        _check_complete(source, container, index, last_ts, rate)


def _check_complete(source: FrameSource, container, index: int, last_ts: float | None,
                    rate: float) -> None:
    """Report a file whose frames stop well before its stated duration (truncated or corrupt)."""
    if container.duration is None or source.kind == "stream":
        return
    import av

    duration = container.duration / av.time_base
    reached = -1.0 if last_ts is None else last_ts
    if reached + 2.0 / rate < duration:
        source._error(index, f"decoding stopped at {max(reached, 0):.2f} s of {duration:.2f} s: "
                             "the file looks truncated or corrupt; the frames before were kept")


class ImageFolderSource(FrameSource):
    """Every image file under a folder, in sorted path order; unreadable files are skipped."""

    kind = "images"

    def __init__(self, uri: str, stride: int = 1, fps: float | None = None,
                 seconds_per_image: float = 1.0, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        super().__init__(uri, stride, fps)
        self.seconds_per_image = seconds_per_image
        self.max_pixels = max_pixels

    def _frame_count(self) -> int | None:
        return len(self.files())

    def files(self) -> list[Path]:
        """The image file, or the images directly inside the folder (sub-folders are sources of
        their own, see :func:`expand_sources`), sorted: a frame's index is its place here."""
        root = Path(self.open_uri)
        if root.is_file():
            return [root]
        return folder_contents(root).images

    def _decode(self) -> Iterator[Frame]:
        files = self.files()
        if not files:
            self._error(None, "no image files (jpg, png, bmp, webp, tif) directly in this folder; "
                              "for its videos and sub-folders use `lrihar annotate FOLDER [--recursive]`")
        for index, path in enumerate(files):
            image = read_image(path, self._error, index, self.max_pixels)
            if image is not None:
                yield Frame(self.uri, index, index * self.seconds_per_image, image, str(path))


UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, ImportError)
"""What PIL raises on a file it cannot read as an image (``UnidentifiedImageError`` is an OSError).
ImportError: once ultralytics is imported it patches Image.open to retry unknown files with an
optional HEIF plug-in, which raises ModuleNotFoundError where that is absent."""


def read_image(path: Path, on_error=None, index: int | None = None,
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray | None:
    """Read an image file as RGB ``uint8``; on failure call ``on_error`` (or raise BadInputError).

    An image of more than ``max_pixels`` (width × height) fails like an unreadable one: a few
    KB of PNG can claim 20,000 × 20,000 pixels and exhaust memory once decoded (a decompression
    bomb). Grey images deeper than 8 bits are scaled to 8 bits (see :func:`_to_rgb`).
    """
    from PIL import Image

    _lift_pil_limit(max_pixels)
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                raise Image.DecompressionBombError(f"{img.width} × {img.height} pixels")
            return _to_rgb(img)
    # PIL raises on its own above twice its limit and warns above it (an error under -W error).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        message = (f"{path}: image larger than the limit of {max_pixels:,} pixels, possibly a "
                   f"decompression bomb ({exc}); if it is genuine, raise sampling.max_image_pixels "
                   "in the project file (annotate: --max-image-pixels)")
    except UNREADABLE_IMAGE_ERRORS as exc:
        message = f"{path}: unreadable image ({exc.__class__.__name__}: {exc})"
    if on_error is None:
        raise BadInputError(message)
    on_error(index, message)
    return None


def _lift_pil_limit(max_pixels: int) -> None:
    """Let PIL open images up to ``max_pixels``: its own, process-wide check refuses anything
    over twice ``Image.MAX_IMAGE_PIXELS`` before :func:`read_image` applies the asked limit."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _to_rgb(img) -> np.ndarray:
    """RGB ``uint8`` pixels of a PIL image.

    ``convert("RGB")`` clips 16-bit grey (``I;16``, ``I;16B``) and 32-bit (``I``, ``F``) values
    to 255, turning a 16-bit PNG white; those are scaled to 8 bits first. (PIL already reads
    16-bit colour PNGs as 8-bit RGB.)
    """
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        grey = _grey_to_uint8(np.asarray(img), img.mode)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def _grey_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit grey keeps its high byte (so a 16-bit copy of an 8-bit image reads back equal);
    ``I`` and ``F`` images do not say their bit depth, so the range the values fill decides."""
    if mode.startswith("I;16"):
        return (values.astype(np.uint16) >> 8).astype(np.uint8)
    if mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        if values.min() >= 0 and values.max() <= 1:
            return (values * 255).astype(np.uint8)
    lo, hi = values.min(), values.max()
    if lo >= 0 and hi <= 255:
        return values.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return (values // 256).astype(np.uint8)
    return ((values.astype(np.float64) - lo) * (255 / max(float(hi - lo), 1.0))).astype(np.uint8)


class StreamSource(FrameSource):
    """A live RTSP/HTTP stream or a camera device, reopened after a drop.

    Frame indices keep counting across reconnects; timestamps are wall-clock seconds since start.
    """

    kind = "stream"

    def __init__(self, uri: str, stride: int = 1, fps: float | None = None,
                 reconnects: int = 3, reconnect_delay: float = 1.0) -> None:
        super().__init__(uri, stride, fps)
        self.reconnects = reconnects
        self.reconnect_delay = reconnect_delay

    def _decode(self) -> Iterator[Frame]:
        url, fmt, options = stream_open_args(self.open_uri)
        start = time.monotonic()
        index = 0
        for attempt in range(self.reconnects + 1):
            errors_before = len(self.errors)
            got = False
            for frame in _decode_container(self, url, options, fmt, start_index=index):
                got = True
                index = frame.index + 1
                yield Frame(self.uri, frame.index, time.monotonic() - start, frame.image)
            dropped = len(self.errors) > errors_before
            if not dropped and got:
                return  # the stream ended cleanly
            if attempt < self.reconnects:
                time.sleep(self.reconnect_delay)


def stream_open_args(uri: str) -> tuple[str, str | None, dict]:
    """PyAV's ``(url, format, options)`` for a stream URL or camera (index ``0`` -> ``/dev/video0``)."""
    if uri.isdigit():
        return f"/dev/video{uri}", "v4l2", {}
    if uri.startswith("/dev/video"):
        return uri, "v4l2", {}
    if uri.startswith(("rtsp://", "rtsps://")):
        return uri, None, {"rtsp_transport": "tcp"}
    return uri, None, {}


def read_frame(uri: str, index: int, timestamp: float, name: str | None = None,
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """One stored frame again: the image file, or the video frame at ``timestamp`` (seeking).

    Raises:
        BadInputError: the file is gone, unreadable, over ``max_pixels``, or the frame cannot be
            decoded any more.
    """
    if name is not None:
        image = read_image(Path(name), max_pixels=max_pixels)
        assert image is not None  # read_image raises rather than return None without on_error
        return image
    if is_stream(uri):
        raise BadInputError(f"{uri}: a live stream's frames were not kept")
    import av

    try:
        with av.open(uri) as container:
            stream = container.streams.video[0]
            if stream.time_base is not None:
                container.seek(int(timestamp / stream.time_base), stream=stream, backward=True)
            for vframe in container.decode(stream):
                ts = float(vframe.time) if vframe.time is not None else None
                if ts is None or ts >= timestamp - 1e-4:
                    return vframe.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise BadInputError(f"{uri}: frame {index} cannot be read ({exc})") from None
    raise BadInputError(f"{uri}: frame {index} at {timestamp:.3f} s is past the end of the file")


def is_stream(uri: str) -> bool:
    """True for URLs and camera devices, which are read live rather than from disk."""
    return uri.startswith(STREAM_SCHEMES) or uri.isdigit() or uri.startswith("/dev/video")


def open_source(uri: str | Path, stride: int = 1, fps: float | None = None,
                max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> FrameSource:
    """Open a video file, image file, image folder (the images directly inside; see
    :func:`expand_sources` for folders of videos and trees), stream URL or camera index; images
    larger than ``max_image_pixels`` are reported and skipped.

    Raises:
        BadInputError: the path does not exist or has an unsupported type.
    """
    uri = str(uri)
    if is_stream(uri):
        return StreamSource(uri, stride, fps)
    path = Path(uri).expanduser().resolve()
    if not path.exists():
        raise BadInputError(f"{uri}: no such file or folder")
    if path.is_dir():
        return ImageFolderSource(str(path), stride, fps, max_pixels=max_image_pixels)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return VideoFileSource(str(path), stride, fps)
    if suffix in IMAGE_SUFFIXES:
        return ImageFolderSource(str(path), stride, fps, max_pixels=max_image_pixels)
    raise BadInputError(
        f"{uri}: unsupported file type {suffix!r}; use a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))}), an image, a folder of images or a stream URL"
    )


@dataclass(frozen=True)
class FolderContents:
    """What one folder holds directly, each list sorted by name; hidden entries are left out."""

    images: list[Path]
    videos: list[Path]
    others: list[Path]
    folders: list[Path]


def folder_contents(folder: Path) -> FolderContents:
    """Sort the entries of ``folder`` into images, videos, other files and sub-folders.

    Hidden entries (``.DS_Store``, ``._clip.mp4`` resource forks, ``.thumbnails/``) are tools'
    clutter, not footage, and are left out.
    """
    images, videos, others, folders = [], [], [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            folders.append(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(path)
        else:
            others.append(path)
    return FolderContents(images, videos, others, folders)


@dataclass(frozen=True)
class ExpandedInputs:
    """The sources a list of inputs names (see :func:`expand_sources`).

    Attributes:
        uris: one per source, in order: video files, image files, folders (as image sources of
            the images directly inside them), stream URLs and cameras.
        skipped: files inside the given folders that are neither images nor videos.
        not_entered: sub-folders left unread because the expansion was not recursive.
    """

    uris: list[str]
    skipped: list[str] = field(default_factory=list)
    not_entered: list[str] = field(default_factory=list)


def expand_sources(inputs: Iterable[str | Path], recursive: bool = False) -> ExpandedInputs:
    """Turn inputs into sources: a folder gives each of its videos as a source of its own and,
    where it holds images, itself as one image source of the images directly inside it.

    With ``recursive``, every sub-folder is read the same way, so each folder of images is its
    own source: a source's URI always stands for the same files, which is what resume relies on.
    Files that are neither images nor videos are listed in ``skipped``, not fatal. Files, streams
    and cameras named directly pass through unchanged (:func:`open_source` checks them). Order:
    inputs as given, each folder's sources sorted by path (its image source, its videos, then its
    sub-folders); a source named twice is kept once.

    Raises:
        BadInputError: a folder (with its sub-folders, if ``recursive``) holds no image or video.

    Example:
        >>> expand_sources(["clips/"], recursive=True).uris  # doctest: +SKIP
        ['/data/clips/a.mp4', '/data/clips/b.mp4', '/data/clips/stills', '/data/clips/stills/x.mp4']
    """
    uris: list[str] = []
    skipped: list[str] = []
    not_entered: list[str] = []
    for item in inputs:
        uri = str(item)
        path = None if is_stream(uri) else Path(uri).expanduser()
        if path is None or not path.is_dir():
            # Resolved as open_source resolves it, so that naming a file twice is noticed.
            uris.append(str(path.resolve()) if path is not None and path.exists() else uri)
            continue
        found, unread = len(uris), len(not_entered)
        pending = [path.resolve()]
        while pending:
            folder = pending.pop(0)
            contents = folder_contents(folder)
            if contents.images:
                uris.append(str(folder))
            uris.extend(str(p) for p in contents.videos)
            skipped.extend(str(p) for p in contents.others)
            if recursive:
                pending[:0] = contents.folders  # depth first, in sorted order
            else:
                not_entered.extend(str(p) for p in contents.folders)
        if len(uris) == found:
            hint = "" if len(not_entered) == unread else "; its sub-folders are read with --recursive"
            raise BadInputError(f"{uri}: no image or video files here{hint} (images: "
                                f"{', '.join(sorted(IMAGE_SUFFIXES))}; videos: "
                                f"{', '.join(sorted(VIDEO_SUFFIXES))})")
    return ExpandedInputs(list(dict.fromkeys(uris)), skipped, not_entered)


T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], maxsize: int = 8) -> Iterator[T]:
    """Produce ``items`` on a background thread behind a bounded queue.

    Decoding releases the GIL, so it overlaps with model inference on the caller's thread.
    Exceptions raised by the producer are re-raised in the consumer.
    """
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as exc:  # re-raised on the consumer side
            q.put(_Raised(exc))
        finally:
            q.put(_DONE)

    thread = threading.Thread(target=produce, daemon=True, name="lrihar-decode")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


@dataclass
class _Raised:
    exc: BaseException
