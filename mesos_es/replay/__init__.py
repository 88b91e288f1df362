"""Replay and audit: rebuild the cluster's state at any position from its history, show an
object's timeline, compare two positions, and verify that every decision was legal.

The history comes from a master's work dir (archive and snapshots), from a live master over
HTTP, or from the Kafka topic the leader exports to (`sources.py`); all three give the same
(position, event bytes) sequence, folded with the masters' own pure `apply` (`fold.py`).
See docs/replay.md.
"""
