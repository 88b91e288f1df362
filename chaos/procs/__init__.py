"""`mesos-es chaos run`: real masters, agents and frameworks on 127.0.0.1 under a seeded fault
schedule, judged by checkers (docs/chaos.md, "Real processes").

schedule   scenarios and their fault schedules (pure: one seed, one schedule)
cluster    the processes: start, kill, pause, resume, restart; health and digests
proxy      the fault-injecting TCP proxy for the masters' Raft links (partitions)
frameworks the workload: our scheduler client, pymesos, a named-log framework
faults     one fault episode against the processes, and its failover times
views      what the masters' archive and the agents' sandboxes say happened
checkers   pure verdicts from the recorded evidence
report     report.json, evidence.json, report.png and the text summary
run        one run from the schedule to the verdicts
cli        the command line
"""
