"""The join's migrations (run by :mod:`analyzer.store.database`'s m004 and m007): what
changed in the tables of :mod:`analyzer.store.model_quality`, applied to a database made
before."""

from __future__ import annotations

from sqlite_utils import Database

from analyzer.store.model_quality import PREDICTION_COLUMNS, create_tables

__all__ = ["drop_key_index", "recount_totals"]


def recount_totals(db: Database) -> None:
    """Count the totals afresh (one scan; migration m004, for a database whose join tables
    were filled before the totals were kept)."""
    create_tables(db)
    db.execute(
        "INSERT OR REPLACE INTO mq_totals SELECT 'labels', count(*) FROM mq_labels"
        " UNION ALL SELECT 'predictions_alone', count(*) FROM mq_predictions_alone"
        " UNION ALL SELECT 'labels_alone', count(*) FROM mq_labels_alone"
    )


def drop_key_index(db: Database) -> bool:
    """Rebuild ``mq_predictions`` without its key index (migration m007), the rows kept in
    their order; False when it has none (created so). The key stays unique: from here on
    :func:`add_predictions` stores a key only when it is neither alone nor joined."""
    found = db.execute("SELECT sql FROM sqlite_master WHERE name = 'mq_predictions'").fetchone()
    if found is None or "PRIMARY KEY" not in found[0].upper():
        return False
    db.execute(f"CREATE TABLE mq_predictions_m007 ({PREDICTION_COLUMNS})")
    db.execute("INSERT INTO mq_predictions_m007 SELECT * FROM mq_predictions ORDER BY rowid")
    db.execute("DROP TABLE mq_predictions")
    db.execute("ALTER TABLE mq_predictions_m007 RENAME TO mq_predictions")
    db.execute("CREATE INDEX mq_predictions_time ON mq_predictions (inference_time)")
    return True
