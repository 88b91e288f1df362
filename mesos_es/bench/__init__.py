"""Benchmarks: `mesos-es bench ...` (see bench/README.md).

Every subcommand prints a readable table, or with `--json` exactly one JSON object on
stdout with its figures, and compares against a baseline measured in the same run.

* `log` (mesos_es.bench.log): committed appends/s and commit latency of the replicated
  log, through the interface and through HTTP, against raw pysyncobj.
"""
