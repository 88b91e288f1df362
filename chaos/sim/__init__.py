"""The deterministic simulator of issue #8 (`mesos-es chaos sim`): the whole cluster in one
process, simulated time and network, one seed a run. See docs/chaos.md and chaos/sim/run.py."""
