"""Crops of stored detections, cut on demand from the original frames (never duplicated).

Example:
    >>> from lrihar.crops import iter_crops
    >>> for row, crop in iter_crops(store, padding=0.1):  # doctest: +SKIP
    ...     print(row.label, crop.shape)
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from lrihar.boxes import crop
from lrihar.naming import safe_file_name
from lrihar.sources import SourceError, is_stream, open_source, read_image
from lrihar.store import DetectionRow, Store


@dataclass(frozen=True)
class FrameRef:
    """A stored frame with no detection to name it (e.g. a negative frame for a detector set)."""

    source_uri: str
    frame_index: int
    frame_name: str | None


_Item = TypeVar("_Item", DetectionRow, FrameRef)  # what read_frames reads: a detection or a frame


def frame_stem(row: DetectionRow | FrameRef) -> str:
    """A file-name stem for a detection's (or a frame's) frame, stable across runs and tools:
    ``<source or image stem>-<hash of source and index>_<frame index>``."""
    base = Path(row.frame_name or row.source_uri).stem
    digest = hashlib.sha1(f"{row.source_uri}#{row.frame_index}".encode()).hexdigest()[:8]
    return f"{safe_file_name(base)[:60]}-{digest}_{row.frame_index:07d}"


def iter_frames(store: Store, errors: list[SourceError] | None = None, only: set[int] | None = None,
                ) -> Iterator[tuple[list[DetectionRow], np.ndarray]]:
    """Yield (detections of one frame, its RGB image) for stored detections, decoding each
    source once.

    Args:
        store: the project store.
        errors: receives a record for each detection whose frame can no longer be read
            (a live stream, a moved file); those are skipped.
        only: detection ids wanted (default all that are not rejected).
    """
    rows = store.detections()
    if only is not None:
        rows = (r for r in rows if r.id in only)
    pairs = read_frames(rows, errors)
    for _frame, group in itertools.groupby(pairs, key=lambda pair: (pair[0].source_uri, pair[0].frame_index)):
        group = list(group)
        yield [row for row, _ in group], group[0][1]


def read_frames(items: Iterable[_Item], errors: list[SourceError] | None = None,
                ) -> Iterator[tuple[_Item, np.ndarray]]:
    """Yield (item, RGB image of its frame) for items (detections or :class:`FrameRef`) ordered
    by (source, frame index), decoding each source once; unreadable frames go to ``errors``."""
    errors = errors if errors is not None else []
    for uri, items_iter in itertools.groupby(items, key=lambda r: r.source_uri):
        source_items = list(items_iter)
        if is_stream(uri) and any(r.frame_name is None for r in source_items):
            errors.append(SourceError(uri, None, "live stream annotated before frames were kept: "
                                                 "its frames cannot be read again"))
            source_items = [r for r in source_items if r.frame_name is not None]
            if not source_items:
                continue
        yield from _frames_for(uri, source_items, errors)


def iter_crops(store: Store, padding: float = 0.0, errors: list[SourceError] | None = None,
               only: set[int] | None = None) -> Iterator[tuple[DetectionRow, np.ndarray]]:
    """Yield (detection, RGB crop) for stored detections (see :func:`iter_frames`).

    ``padding`` grows each box by this fraction of its size per side.
    """
    rows = store.detections()
    if only is not None:
        rows = (r for r in rows if r.id in only)
    return crops_of(rows, padding, errors)


def crops_of(rows: Iterable[DetectionRow], padding: float = 0.0, errors: list[SourceError] | None = None,
             ) -> Iterator[tuple[DetectionRow, np.ndarray]]:
    """Yield (detection, RGB crop) for ``rows`` ordered by (source, frame index), without the
    store (how a Ray worker cuts crops); see :func:`iter_crops`."""
    for row, image in read_frames(rows, errors):
        cut = crop(image, row.xyxy, padding)
        if cut.size:
            yield row, cut


def _frames_for(uri: str, rows: list[_Item],
                errors: list[SourceError]) -> Iterator[tuple[_Item, np.ndarray]]:
    if rows[0].frame_name is not None:  # image files: read each one directly
        for name, group_iter in itertools.groupby(rows, key=lambda r: r.frame_name):
            group = list(group_iter)
            image = read_image(Path(name), lambda i, m: errors.append(SourceError(uri, i, m)),
                               group[0].frame_index)
            if image is not None:
                yield from ((row, image) for row in group)
        return
    wanted: dict[int, list[_Item]] = {}
    for row in rows:
        wanted.setdefault(row.frame_index, []).append(row)
    try:
        source = open_source(uri)
    except Exception as exc:  # the file moved or vanished since it was annotated
        errors.append(SourceError(uri, None, str(exc)))
        return
    last = max(wanted)
    for frame in source:
        for row in wanted.pop(frame.index, []):
            yield row, frame.image
        if frame.index >= last:
            break
    errors.extend(source.errors)
    for index in sorted(wanted):
        errors.append(SourceError(uri, index, "frame no longer decodable; crop skipped"))


def write_crops(store: Store, out_dir: str | Path, padding: float = 0.0,
                errors: list[SourceError] | None = None) -> int:
    """Write every detection's crop as ``OUT/<source stem>/<frame>_<id>.jpg``; returns the count."""
    import json

    from PIL import Image

    from lrihar.versions import package_versions

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "lrihar-crops.json").write_text(json.dumps(
        {"store": str(store.path), "padding": padding, "versions": package_versions()}, indent=2) + "\n")
    n = 0
    for row, cut in iter_crops(store, padding, errors):
        folder = out_dir / _safe_stem(row.source_uri)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(cut).save(folder / f"{row.frame_index:07d}_{row.id}.jpg", quality=95)
        n += 1
    return n


def _safe_stem(uri: str) -> str:
    """A folder name for a source: its readable stem plus a hash, so equal stems never collide."""
    stem = Path(uri.split("://")[-1]).stem or "source"
    digest = hashlib.sha1(uri.encode()).hexdigest()[:8]
    return f"{safe_file_name(stem)}-{digest}"
