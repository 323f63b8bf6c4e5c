"""The result store: SQLite, one row per (assignment, submission content, grader version).

Results are written one by one as jobs finish, each in its own transaction, so killing the grader
at any moment loses at most the jobs still running and never leaves half a row; the primary key
means a re-run replaces instead of duplicating. WAL mode and a busy timeout let two `grade`
processes share one database.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    assignment TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    grader_version TEXT NOT NULL,
    record TEXT NOT NULL,
    graded_at REAL NOT NULL,
    PRIMARY KEY (assignment, sha256, grader_version)
);
CREATE TABLE IF NOT EXISTS secrets (
    assignment TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    secret TEXT NOT NULL,
    PRIMARY KEY (assignment, sha256)
);
CREATE TABLE IF NOT EXISTS submissions (
    assignment TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (assignment, name, sha256)
);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL is a property of the file, set once. Switching to it needs the database alone, and
        # SQLite answers "locked" at once, without its busy wait, when a second grader opens the
        # same new store at that moment: wait here instead.
        for attempt in range(600):
            try:
                with self._connect() as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == 599:
                    raise
                time.sleep(0.1)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    def get(self, assignment: str, sha256: str, grader_version: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT record FROM results WHERE assignment=? AND sha256=? AND grader_version=?",
                (assignment, sha256, grader_version)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, record: dict[str, Any]) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                (record["assignment"], record["sha256"], record["grader_version"],
                 json.dumps(record, allow_nan=True), now))
            db.execute("COMMIT")

    def secret(self, assignment: str, sha256: str) -> str:
        """The grader's secret for one submission's content (hw4's stand-in test splits): made once,
        at random, and kept, so that a regrade shows the notebook exactly the same files."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO secrets VALUES (?, ?, ?)", (assignment, sha256, secrets.token_hex(16)))
            return db.execute("SELECT secret FROM secrets WHERE assignment=? AND sha256=?",
                              (assignment, sha256)).fetchone()[0]

    def note_submission(self, assignment: str, name: str, sha256: str) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO submissions VALUES (?, ?, ?, ?, ?) ON CONFLICT(assignment, name, sha256) "
                "DO UPDATE SET last_seen=excluded.last_seen", (assignment, name, sha256, now, now))

    def latest(self, assignment: str) -> list[tuple[dict[str, Any], float]]:
        """Each submission's newest content, with its newest grade and when that content first came in."""
        query = """
            SELECT s.name, r.record, s.first_seen FROM submissions s
            JOIN results r ON r.assignment = s.assignment AND r.sha256 = s.sha256
            WHERE s.assignment = ? AND s.last_seen = (
                SELECT MAX(last_seen) FROM submissions WHERE assignment = s.assignment AND name = s.name)
            AND r.graded_at = (
                SELECT MAX(graded_at) FROM results WHERE assignment = r.assignment AND sha256 = r.sha256)
            ORDER BY s.name"""
        with self._connect() as db:
            rows = db.execute(query, (assignment,)).fetchall()
        # Identical content may have come in under two names: each name gets its own copy.
        return [(json.loads(text) | {"submission": name}, first_seen) for name, text, first_seen in rows]

    def ungraded(self, assignment: str) -> list[tuple[str, str]]:
        """(name, sha256) of each submission whose newest content has no stored grade at all."""
        query = """
            SELECT s.name, s.sha256 FROM submissions s
            WHERE s.assignment = ? AND s.last_seen = (
                SELECT MAX(last_seen) FROM submissions WHERE assignment = s.assignment AND name = s.name)
            AND NOT EXISTS (SELECT 1 FROM results r WHERE r.assignment = s.assignment AND r.sha256 = s.sha256)
            ORDER BY s.name"""
        with self._connect() as db:
            return [(name, sha256) for name, sha256 in db.execute(query, (assignment,)).fetchall()]

    def records(self, assignment: str, grader_version: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT record FROM results WHERE assignment=?"
        params: tuple[Any, ...] = (assignment,)
        if grader_version:
            query += " AND grader_version=?"
            params += (grader_version,)
        with self._connect() as db:
            return [json.loads(row[0]) for row in db.execute(query + " ORDER BY graded_at", params)]
