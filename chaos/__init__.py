"""Chaos testing: a deterministic in-process simulator (`chaos.sim`) and a real-process fault
harness (`chaos.procs`), both driven by one seed so that every failure replays. See docs/chaos.md."""
