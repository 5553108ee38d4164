"""``lrihar classify --engine ray``: crops cut in Ray tasks, the encoder in an actor pool, matching here.

Only embedding moves: the detections not yet embedded with the encoder are cut into shards (by
source, whole frames, ``SHARD_CROPS`` crops at most), a read task cuts their crops, a pool of
encoder actors embeds them, and the driver stores each finished shard's embeddings in one
transaction (``INSERT OR REPLACE`` by detection and encoder: a shard written twice counts once).
Templates, matching and labels then run as in the local engine, on the same store.

A fusion encoder embeds each part under its own key and stores the parts side by side, as the
local engine does; the landmark-only ``hand-pose`` encoder reads no pixels and runs here.

Example:
    >>> classify_with_ray(Project.open("proj"), RayOptions(workers=2))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lrihar.classify.embed import embed_detections, store_joined_parts
from lrihar.classify.pipeline import ClassifySummary, classify
from lrihar.config import ProjectConfig, with_overrides
from lrihar.crops import crops_of
from lrihar.engines.ray_cluster import RayOptions, import_ray, ray_session, shard_dataset
from lrihar.models.build import build_encoder
from lrihar.models.encoders import Crop, Encoder
from lrihar.project import Project
from lrihar.sources import SourceError
from lrihar.store import DetectionRow, Store

EncoderFactory = Callable[[], Encoder]
"""Builds the encoder inside an actor; must pickle by reference (Ray ships it to every worker)."""

SHARD_CROPS = 512


def classify_with_ray(project: Project, options: RayOptions, encoder_factory: EncoderFactory | None = None,
                      **kwargs: Any) -> ClassifySummary:
    """:func:`~lrihar.classify.pipeline.classify` with embedding on a Ray actor pool.

    Args:
        project: the opened project.
        options: cluster and pool settings.
        encoder_factory: builds the encoder in each actor; needed only with a ready ``encoder``
            (else actors build the one the driver built from the project file, ``auto`` included).
        **kwargs: ``classify``'s other arguments (config, templates, encoder, sheets_dir, ...).
    """
    import_ray()
    cfg = kwargs.pop("config", None) or project.config
    return classify(project, config=cfg, embedder=RayEmbedder(cfg, options, encoder_factory), **kwargs)


@dataclass(frozen=True)
class BuildEncoder:
    """Builds, in an actor, the encoder :func:`~lrihar.classify.pipeline.build_encoder` built on the
    driver (``built_with``), or one of its ``components`` (``part``)."""

    cfg: ProjectConfig
    name: str
    options: dict | None
    part: int | None = None

    def __call__(self) -> Encoder:
        encoder = build_encoder(self.cfg, self.name, self.options)
        return encoder if self.part is None else encoder.components[self.part]


class RayEmbedder:
    """The :data:`~lrihar.classify.pipeline.Embedder` of ``--engine ray``."""

    def __init__(self, cfg: ProjectConfig, options: RayOptions,
                 encoder_factory: EncoderFactory | None = None) -> None:
        self.cfg, self.options, self.encoder_factory = cfg, options, encoder_factory

    def __call__(self, store: Store, encoder: Encoder, key: str, padding: float,
                 errors: list[SourceError], show_progress: bool = False, only: set[int] | None = None) -> int:
        todo = {r[0] for r in store.db.execute("SELECT id FROM detections WHERE rejected = 0")}
        todo -= store.embedded_detections(key)
        if only is not None:  # a --line / --post filter
            todo &= only
        if not todo:
            return 0
        if not encoder.uses_pixels:  # landmark geometry: no frames, no model; cheap here
            return embed_detections(store, encoder, key, padding, errors, show_progress, only=todo)
        components = getattr(encoder, "components", None)
        if not components:
            return self._embed(store, self._factory(encoder), key, padding, errors, todo)
        keys = []
        for i, part in enumerate(components):
            keys.append(store.register_encoder(part.describe()))
            if part.uses_pixels:
                self._embed(store, self._factory(encoder, i), keys[-1], padding, errors,
                            todo - store.embedded_detections(keys[-1]))
            else:
                embed_detections(store, part, keys[-1], padding, errors, show_progress, only=todo)
        return store_joined_parts(store, key, keys, todo)

    def _factory(self, encoder: Encoder, part: int | None = None) -> EncoderFactory:
        if self.encoder_factory is not None:
            factory = self.encoder_factory
            return factory if part is None else (lambda: factory().components[part])
        built_with = getattr(encoder, "built_with", None)
        if built_with is None:
            raise ValueError("classify --engine ray: a ready encoder needs encoder_factory (how an actor "
                             "builds it)")
        return BuildEncoder(self.cfg, built_with[0], built_with[1], part)

    def _embed(self, store: Store, factory: EncoderFactory, key: str, padding: float,
               errors: list[SourceError], todo: set[int]) -> int:
        if not todo:
            return 0
        shards = plan_crop_shards([r for r in store.detections() if r.id in todo])
        with ray_session(self.options) as pool:
            if (pool.gpus_per_actor and isinstance(factory, BuildEncoder)
                    and factory.cfg.classify.device == "cpu"):  # GPU actors: the encoder on its GPU
                factory = BuildEncoder(with_overrides(factory.cfg, "classify", device="cuda"),
                                       factory.name, factory.options, factory.part)
            ds = shard_dataset(len(shards)).map_batches(cut_crops, batch_size=1, fn_kwargs=dict(
                shards=shards, padding=padding), **pool.read_args())
            ds = ds.map_batches(EmbedActor, fn_constructor_args=(factory,),
                                batch_size=self.options.batch_size or 32, **pool.actor_args())
            return _store_in_order(store, key, len(shards), errors, ds.iter_rows())


def plan_crop_shards(rows: list[DetectionRow], size: int = SHARD_CROPS) -> list[list[DetectionRow]]:
    """Detections (ordered by source, frame, id) in shards of one source, whole frames, ≤ ``size``
    crops (more only where one frame holds more)."""
    shards: list[list[DetectionRow]] = []
    for _uri, by_source in itertools.groupby(rows, key=lambda r: r.source_uri):
        current: list[DetectionRow] = []
        for _frame, by_frame in itertools.groupby(by_source, key=lambda r: r.frame_index):
            frame_rows = list(by_frame)
            if current and len(current) + len(frame_rows) > size:
                shards.append(current)
                current = []
            current += frame_rows
        shards.append(current)
    return shards


def cut_crops(batch: dict[str, np.ndarray], *, shards: list[list[DetectionRow]],
              padding: float) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data read stage: each shard's crops (one row each), then an ``end`` row with its errors."""
    for shard_id in (int(s) for s in batch["shard"]):
        errors: list[SourceError] = []
        rows = []
        for row, crop in crops_of(shards[shard_id], padding, errors):
            extra = {"world": row.world_landmarks, "hand": row.handedness, "lms": row.landmarks}
            rows.append((shard_id, "crop", row.id, np.ascontiguousarray(crop).tobytes(), crop.shape[0],
                         crop.shape[1], json.dumps(extra)))
        rows.append((shard_id, "end", -1, b"", 0, 0, json.dumps({"rows": len(rows),
                                                                 "errors": [asdict(e) for e in errors]})))
        for k in range(0, len(rows), 64):
            chunk = rows[k:k + 64]
            yield {name: np.array([r[i] for r in chunk], dtype=object if name in ("kind", "image", "info")
                                  else None)
                   for i, name in enumerate(("shard", "kind", "id", "image", "height", "width", "info"))}


class EmbedActor:
    """Ray Data actor stage: embeds crops; rows leave with their vector (float32 bytes) instead."""

    def __init__(self, factory: EncoderFactory) -> None:
        self.encoder = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        todo = [i for i, kind in enumerate(batch["kind"]) if kind == "crop"]
        crops = []
        for i in todo:
            extra = json.loads(batch["info"][i])
            image = np.frombuffer(batch["image"][i], np.uint8).reshape(
                int(batch["height"][i]), int(batch["width"][i]), 3)
            crops.append(Crop(image, None if extra["world"] is None else np.asarray(extra["world"]),
                              extra["hand"], None if extra["lms"] is None else np.asarray(extra["lms"])))
        step = max(1, self.encoder.batch_size)
        vectors = [v for k in range(0, len(crops), step) for v in self.encoder.embed(crops[k:k + step])]
        out = np.full(len(batch["kind"]), b"", dtype=object)
        for i, v in zip(todo, vectors, strict=True):
            out[i] = np.asarray(v, np.float32).tobytes()
        return {k: v for k, v in batch.items() if k != "image"} | {"vector": out}


def _store_in_order(store: Store, key: str, n_shards: int, errors: list[SourceError],
                    rows: Iterator[dict[str, Any]]) -> int:
    """Store each finished shard's embeddings in one transaction, shards in order."""
    vectors: dict[int, dict[int, bytes]] = {}
    ends: dict[int, dict] = {}
    done = next_shard = 0
    for row in rows:
        shard = int(row["shard"])
        if row["kind"] == "end":
            ends[shard] = json.loads(row["info"])
        else:
            vectors.setdefault(shard, {})[int(row["id"])] = row["vector"]
        while next_shard in ends and len(vectors.get(next_shard, {})) == ends[next_shard]["rows"]:
            got = vectors.pop(next_shard, {})
            if got:
                ids = sorted(got)
                store.put_detection_embeddings(key, ids, np.stack([np.frombuffer(got[i], np.float32)
                                                                   for i in ids]))
            errors += [SourceError(**e) for e in ends.pop(next_shard)["errors"]]
            done += len(got)
            next_shard += 1
    if next_shard != n_shards:
        raise RuntimeError(f"Ray returned {next_shard} of {n_shards} shards complete")
    return done
