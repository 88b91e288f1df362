"""Running one planned fault against the real processes, and timing the failover it causes.

An episode resolves its target ("leader" is whoever leads when it starts), injects the
fault, holds it, recovers (restart, SIGCONT, heal) whatever happens, and then waits until
every master agrees on one leader again. Faults that take the leader away are timed from
the signal (or the cut) to

- `new_leader_s`: a master other than the old leader reports the Raft role leader in a later
  term (its /health, polled every 50 ms);
- `agents_s`: every running agent reports (its /state) that it is registered with a master
  other than the old leader, all with the same one.

The record of an episode is plain JSON for the report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos.procs.cluster import Cluster, Node
from chaos.procs.schedule import Fault, partition_groups

POLL_S = 0.05
LEADER_TIMEOUT_S = 60.0
AGENTS_TIMEOUT_S = 90.0
RECOVERY_TIMEOUT_S = 90.0
AGENT_BACK_TIMEOUT_S = 60.0


@dataclass
class Context:
    cluster: Cluster
    clock: Callable[[], float]
    say: Callable[[str], None]


async def run_fault(index: int, fault: Fault, ctx: Context) -> dict:
    record = {"index": index, **fault.to_json(), "planned_s": fault.at_s, "started_s": None, "resolved": None,
              "leader_before": None, "term_before": None, "expects_failover": False, "new_leader": None,
              "new_leader_s": None, "agents_s": None, "recovered": False, "recovered_s": None, "ended_s": None,
              "error": None}
    try:
        if fault.kind == "kill-agent":
            await _kill_agent(fault, ctx, record)
        else:
            await _master_fault(fault, ctx, record)
    except Exception as e:  # noqa: BLE001 - an episode that cannot run is evidence, not a crash of the harness
        record["error"] = f"{type(e).__name__}: {e}"
    finally:
        await _heal_everything(ctx, only_agents=fault.kind == "kill-agent", target=record.get("resolved"))
    found = await ctx.cluster.wait_for_leader(RECOVERY_TIMEOUT_S)
    record["recovered"] = found is not None
    record["leader_after"] = found[0].name if found else None
    record["recovered_s"] = round(ctx.clock(), 3)
    record["ended_s"] = round(ctx.clock(), 3)
    ctx.say(_summary(record))
    return record


async def _master_fault(fault: Fault, ctx: Context, record: dict) -> None:
    cluster = ctx.cluster
    found = await cluster.wait_for_leader(30.0)
    if found is None:
        raise RuntimeError("no agreed leader to fault")
    leader, health = found
    record["leader_before"], record["term_before"] = leader.name, health["term"]
    names = [m.name for m in cluster.master_nodes]
    if fault.kind == "kill-master":
        victim = cluster.nodes[fault.target]
    else:
        victim = leader
    record["resolved"] = victim.name
    measure = None
    if fault.kind in ("kill-leader", "kill-master", "restart-leader", "pause-leader"):
        record["expects_failover"] = victim is leader
        started = time.monotonic()
        record["started_s"] = round(ctx.clock(), 3)
        if fault.kind == "pause-leader":
            cluster.pause(victim)
        elif fault.kind == "restart-leader":
            terminating = asyncio.create_task(cluster.terminate(victim))
        else:
            cluster.kill(victim)
        if victim is leader:
            measure = asyncio.create_task(_measure(cluster, leader, health["term"], started))
        if fault.kind == "restart-leader":
            await terminating
        await asyncio.sleep(fault.hold_s)
        if fault.kind == "pause-leader":
            cluster.resume(victim)
            record["resumed_s"] = round(ctx.clock(), 3)
        else:
            await cluster.wait_dead(victim)
            await cluster.restart(victim)
            record["restarted_s"] = round(ctx.clock(), 3)
    elif fault.kind == "partition":
        pairs = partition_groups(fault.target, fault.pick, leader.name, names)
        record["cut"] = [list(p) for p in pairs]
        isolated = fault.target in ("isolate-leader", "leader-minority")
        record["expects_failover"] = isolated
        record["resolved"] = f"{fault.target}: " + ", ".join(f"{a}-{b}" for a, b in pairs)
        started = time.monotonic()
        record["started_s"] = round(ctx.clock(), 3)
        await cluster.proxy.cut(pairs)
        if isolated:
            measure = asyncio.create_task(_measure(cluster, leader, health["term"], started))
        await asyncio.sleep(fault.hold_s)
        await cluster.proxy.heal()
        record["healed_s"] = round(ctx.clock(), 3)
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")
    if measure is not None:
        new_leader, new_leader_s, agents_s = await measure
        record.update(new_leader=new_leader, new_leader_s=new_leader_s, agents_s=agents_s)


async def _measure(cluster: Cluster, old: Node, old_term: int, started: float) -> tuple[str | None, float | None,
                                                                                          float | None]:
    """(new leader, seconds to it, seconds to every agent registered away from the old leader)."""
    new_leader = new_leader_s = agents_s = None
    deadline = started + LEADER_TIMEOUT_S
    while time.monotonic() < deadline:
        others = [m for m in cluster.master_nodes if m is not old]
        answers = await asyncio.gather(*(cluster.health(m, timeout_s=0.5) for m in others))
        leading = [(m, a) for m, a in zip(others, answers) if a and a["role"] == "leader" and a["term"] > old_term]
        if leading:
            new_leader, new_leader_s = leading[0][0].name, round(time.monotonic() - started, 3)
            break
        await asyncio.sleep(POLL_S)
    if new_leader is None:
        return None, None, None
    deadline = started + AGENTS_TIMEOUT_S
    while time.monotonic() < deadline:
        running = [a for a in cluster.agent_nodes if a.up and not a.paused]
        states = await asyncio.gather(*(cluster.agent_state(a, timeout_s=0.5) for a in running))
        leaders = {s.get("leader") for s in states if s}
        if all(s and s.get("registered") for s in states) and len(leaders) == 1 and old.http not in leaders:
            agents_s = round(time.monotonic() - started, 3)
            break
        await asyncio.sleep(POLL_S * 2)
    return new_leader, new_leader_s, agents_s


async def _kill_agent(fault: Fault, ctx: Context, record: dict) -> None:
    cluster = ctx.cluster
    agent = cluster.nodes[fault.target]
    record["resolved"] = agent.name
    if not agent.up:
        raise RuntimeError(f"{agent.name} is not running")
    started = time.monotonic()
    record["started_s"] = round(ctx.clock(), 3)
    cluster.kill(agent)
    await cluster.wait_dead(agent)
    await asyncio.sleep(fault.hold_s)
    await cluster.restart(agent)
    record["restarted_s"] = round(ctx.clock(), 3)
    deadline = time.monotonic() + AGENT_BACK_TIMEOUT_S
    while time.monotonic() < deadline:
        state = await cluster.agent_state(agent, timeout_s=0.5)
        if state and state.get("registered"):
            record["agent_back_s"] = round(time.monotonic() - started, 3)
            return
        await asyncio.sleep(POLL_S * 2)
    record["agent_back_s"] = None


async def _heal_everything(ctx: Context, only_agents: bool, target: str | None) -> None:
    """Whatever the episode left broken is repaired: paused nodes resumed, partitions healed,
    dead masters (or the episode's agent) started again."""
    cluster = ctx.cluster
    for node in cluster.nodes.values():
        if only_agents and node.kind != "agent":
            continue
        if node.paused:
            cluster.resume(node)
        if not node.up and (node.kind == "master" or node.name == target):
            await cluster.restart(node)
    if cluster.proxy is not None and not only_agents:
        await cluster.proxy.heal()


def _summary(r: dict) -> str:
    parts = [f"fault #{r['index']} {r['kind']} {r['resolved'] or r['target']} at t={r['started_s']}s"]
    if r["expects_failover"]:
        parts.append(f"new leader {r['new_leader']} in {r['new_leader_s']} s, agents in {r['agents_s']} s")
    elif r.get("leader_before") and r.get("leader_after") and r["leader_before"] != r["leader_after"]:
        parts.append(f"leader changed anyway: {r['leader_before']} -> {r['leader_after']}")
    if r.get("agent_back_s") is not None:
        parts.append(f"agent back in {r['agent_back_s']} s")
    if r["error"]:
        parts.append(f"ERROR {r['error']}")
    if not r["recovered"]:
        parts.append("NOT RECOVERED")
    return "; ".join(parts)
