"""Results: the per-image row schema and its parquet store (resume, shards, merge), and the decoded crops
kept for the report."""
