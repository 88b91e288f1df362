"""`mesos-es agent`: runs tasks as real processes and reports them to the leading master.

Pure parts (no I/O, no clock; time is an argument): `updates` (reliable status-update
queues), `tasks` (task states and status objects), `reconfig` (the reconfiguration policy),
`estimator` (oversubscription), `isolation.CoreAllocator`, `health.HealthTracker`. The rest
is the I/O shell: `master_client`, `launcher`, `executor_api`, `checkpoint`, `agent`, `main`,
`synthetic`.
"""
