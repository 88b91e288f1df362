"""The replicated log: the consensus boundary of mesos-es.

`interface.ReplicatedLog` is the contract; `raft.RaftLog` implements it on pysyncobj with a
durable journal and a hash-chained archive of the whole history, `memory.MemoryLog` in
memory for tests and simulation. `client` is the HTTP client for frameworks' named logs.
"""
