"""Low-level helpers shared by every stage: input validation, the durable
SQLite store behind the caches, HTTP retry timing, cache folders, optional
imports and warnings at the caller's line. Nothing here imports another
subpackage of sklearn_hypothesaes."""
