"""mesos-es: a Mesos-style cluster manager whose master is an event-sourced state machine
on a Raft replicated log."""

# Plain dotted integers: pymesos parses this and crashes on suffixes such as "-dev".
__version__ = "0.1.0"
