"""The store's tables, its schema version, and the in-place upgrade of older stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lrihar.errors import BadInputError

SCHEMA_VERSION = 8
# 2: embeddings, labels; 3: text_score, auto_label, post; 4: review; 5: run pid;
# 6: frame_reviews, review_log rows about a frame (detection_id NULL, source_id + frame_index);
# 7: label provenance 'model' (a trained classifier's label); 8: `lrihar run`'s events, cycles,
# alerts, gaps (new tables only: an older store gets them from CREATE TABLE IF NOT EXISTS)

FRAME_STATUSES = ("action", "empty", "gated")
# A review action changes a detection (detection_id) or a whole frame (detection_id NULL; source_id
# and frame_index name the frame, e.g. a person's "no hand here"). No foreign keys to detections or
# frames: the log outlives what it describes (an undone add, a redone source).
REVIEW_LOG_COLUMNS = """
    id INTEGER PRIMARY KEY,
    action_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    session_id INTEGER REFERENCES review_sessions(id),
    action TEXT NOT NULL,
    detection_id INTEGER,
    before TEXT,
    after TEXT,
    undone INTEGER NOT NULL DEFAULT 0,
    source_id INTEGER,
    frame_index INTEGER,
    CHECK (detection_id IS NOT NULL OR frame_index IS NOT NULL)
"""
# frame_reviews: a person's verdict on a whole frame ('empty': looked, really no hand). Keyed by the
# frame but without a foreign key, so a verdict survives `annotate --redo` of its source.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    added_at TEXT NOT NULL,
    post TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    config TEXT NOT NULL,
    versions TEXT NOT NULL,
    stats TEXT,
    host TEXT,
    pid INTEGER,
    pid_start INTEGER
);
CREATE TABLE IF NOT EXISTS frames (
    source_id INTEGER NOT NULL REFERENCES sources(id),
    frame_index INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    name TEXT,
    status TEXT NOT NULL CHECK (status IN ('action', 'empty', 'gated')),
    run_id INTEGER NOT NULL REFERENCES runs(id),
    PRIMARY KEY (source_id, frame_index)
);
CREATE TABLE IF NOT EXISTS detections (
    id INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL,
    frame_index INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    score REAL NOT NULL,
    text_score REAL,
    label TEXT NOT NULL,
    backend TEXT NOT NULL,
    box_threshold REAL,
    text_threshold REAL,
    handedness TEXT,
    landmarks TEXT,
    world_landmarks TEXT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    rejected INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (source_id, frame_index) REFERENCES frames(source_id, frame_index)
);
CREATE INDEX IF NOT EXISTS detections_by_frame ON detections(source_id, frame_index);
CREATE TABLE IF NOT EXISTS encoders (
    key TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS template_embeddings (
    sha1 TEXT NOT NULL,
    encoder_key TEXT NOT NULL REFERENCES encoders(key),
    vector BLOB NOT NULL,
    PRIMARY KEY (sha1, encoder_key)
);
CREATE TABLE IF NOT EXISTS detection_embeddings (
    detection_id INTEGER NOT NULL REFERENCES detections(id) ON DELETE CASCADE,
    encoder_key TEXT NOT NULL REFERENCES encoders(key),
    vector BLOB NOT NULL,
    PRIMARY KEY (detection_id, encoder_key)
);
CREATE TABLE IF NOT EXISTS labels (
    detection_id INTEGER PRIMARY KEY REFERENCES detections(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    auto_label TEXT,
    score REAL,
    runner_up TEXT,
    margin REAL,
    encoder_key TEXT,
    lambda REAL,
    provenance TEXT NOT NULL CHECK (provenance IN ('auto', 'corrected', 'model')),
    run_id INTEGER REFERENCES runs(id),
    at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS review_sessions (
    id INTEGER PRIMARY KEY,
    reviewer TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS review_log ({REVIEW_LOG_COLUMNS});
CREATE INDEX IF NOT EXISTS review_log_by_action ON review_log(action_id);
CREATE INDEX IF NOT EXISTS review_log_by_detection ON review_log(detection_id);
CREATE TABLE IF NOT EXISTS frame_reviews (
    source_id INTEGER NOT NULL,
    frame_index INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('empty')),
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (source_id, frame_index)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    post TEXT NOT NULL,
    source TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    confidence REAL NOT NULL,
    frames INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('new', 'update', 'end')),
    wall_start REAL NOT NULL,
    wall_end REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_post ON events(post, start);
CREATE INDEX IF NOT EXISTS events_open ON events(state) WHERE state <> 'end';
CREATE TABLE IF NOT EXISTS cycles (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    post TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    steps_seen TEXT NOT NULL,
    missing TEXT NOT NULL,
    out_of_order TEXT NOT NULL,
    too_short TEXT NOT NULL,
    too_long TEXT NOT NULL,
    complete INTEGER NOT NULL,
    cycle_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    post TEXT NOT NULL,
    cycle_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step TEXT NOT NULL,
    at REAL NOT NULL,
    message TEXT NOT NULL,
    event_id INTEGER,
    wall_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    source TEXT NOT NULL,
    post TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL,
    reason TEXT NOT NULL,
    wall_start REAL NOT NULL,
    wall_end REAL
);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    source_uri TEXT NOT NULL,
    frame_index INTEGER,
    message TEXT NOT NULL,
    at TEXT NOT NULL
);
"""

# Columns added after schema 1, for upgrading an existing store in place.
ADDED_COLUMNS = (("sources", "post", "TEXT"), ("detections", "text_score", "REAL"),
                  ("labels", "auto_label", "TEXT"), ("detections", "rejected", "INTEGER NOT NULL DEFAULT 0"),
                  ("labels", "version", "INTEGER NOT NULL DEFAULT 0"), ("runs", "host", "TEXT"),
                  ("runs", "pid", "INTEGER"), ("runs", "pid_start", "INTEGER"))


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create missing tables; upgrade an older store in place; refuse a newer one.

    Runs inside the caller's transaction.
    """
    # executescript() would commit on its own; run statements one by one instead.
    for statement in filter(str.strip, SCHEMA.split(";")):
        db.execute(statement)
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) > SCHEMA_VERSION:
        raise BadInputError(
            f"{path}: store schema {row[0]} is newer than this lrihar "
            f"(schema {SCHEMA_VERSION}); upgrade lrihar"
        )
    elif int(row[0]) < SCHEMA_VERSION:  # tables were created above; add new columns
        for table, column, kind in ADDED_COLUMNS:
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        # Runs still 'running' from before schema 5 have no pid to check: almost surely
        # killed long ago (a live one would set its status again when it ends).
        db.execute("UPDATE runs SET status='interrupted' WHERE status='running' AND pid IS NULL")
        _upgrade_review_log(db)
        _allow_model_provenance(db)
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))


def _upgrade_review_log(db: sqlite3.Connection) -> None:
    """Before schema 6 every log row named a detection (``detection_id NOT NULL``). SQLite cannot
    relax a column in place, so the table is rebuilt with the frame columns, keeping every row."""
    info = {r[1]: r for r in db.execute("PRAGMA table_info(review_log)")}
    if "source_id" in info and not info["detection_id"][3]:  # [3]: notnull
        return
    kept = ", ".join(c for c in info if c not in ("source_id", "frame_index"))
    db.execute(f"CREATE TABLE review_log_v6 ({REVIEW_LOG_COLUMNS})")
    db.execute(f"INSERT INTO review_log_v6 ({kept}) SELECT {kept} FROM review_log")
    db.execute("DROP TABLE review_log")  # its indexes go with it
    db.execute("ALTER TABLE review_log_v6 RENAME TO review_log")
    db.execute("CREATE INDEX review_log_by_action ON review_log(action_id)")
    db.execute("CREATE INDEX review_log_by_detection ON review_log(detection_id)")


def _allow_model_provenance(db: sqlite3.Connection) -> None:
    """Schema 7: rebuild ``labels`` so that its CHECK admits 'model' (SQLite cannot alter a CHECK).

    Nothing references ``labels``, so it is copied into a new table, dropped and replaced in
    the caller's transaction: the rows, their ids and versions are kept as they are.
    """
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='labels'").fetchone()[0]
    if "'model'" in sql:
        return
    create = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS labels"):]
    create = create[:create.index(";")].replace("IF NOT EXISTS labels", "labels_v7")
    db.execute(create)
    columns = ", ".join(r[1] for r in db.execute("PRAGMA table_info(labels)"))
    db.execute(f"INSERT INTO labels_v7 ({columns}) SELECT {columns} FROM labels")
    db.execute("DROP TABLE labels")
    db.execute("ALTER TABLE labels_v7 RENAME TO labels")
