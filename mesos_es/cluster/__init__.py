"""`mesos-es cluster up`: a local cluster of real processes on loopback."""
