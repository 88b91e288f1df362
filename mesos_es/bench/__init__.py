"""Benchmarks: `mesos-es bench ...`."""
