"""The nemesis: seeded faults during the safety phase, and the healing that ends it.

Every few simulated seconds it picks one fault the cluster can survive and schedules its
repair:

| fault | what | repaired after |
| --- | --- | --- |
| `kill-leader` | the leading master crashes | it restarts from its durable log |
| `kill-leader-proposing` | the leader crashes while its next proposal is in flight | restart |
| `crash-master` | a master that does not lead crashes | restart |
| `partition` | the masters split into a minority (often with the leader) and a majority; every agent, framework and client lands on one side | heal |
| `cut-link` | one link (master-master or client-master) is cut | heal |
| `crash-agent` | an agent crashes (its executors may survive) | it recovers its checkpoint |
| `clock-jump` | the leader's wall clock jumps by up to 30 s either way | (stays) |
| `stream-reset` | a framework's or agent's stream connection is reset | the client reconnects |
| `lossy` | 20% of messages dropped, 10% duplicated, for a few seconds | back to the base rates |

Faults respect quorum: one that would leave no live, mutually connected majority of masters
is skipped, unless the run allows quorum loss. `heal_all` ends the phase: every cut healed,
every crashed node restarted, the network back to its base rates.
"""

from __future__ import annotations

import itertools

KINDS = ("kill-leader", "kill-leader-proposing", "crash-master", "partition", "cut-link", "crash-agent",
         "clock-jump", "stream-reset", "lossy")
WEIGHTS = (3, 2, 2, 3, 2, 3, 2, 2, 1)


class Nemesis:
    def __init__(self, world, net, consensus, masters, agents, clients, gap_ms: tuple[int, int],
                 allow_quorum_loss: bool = False):
        self.world = world
        self.net = net
        self.consensus = consensus
        self.masters = {m.name: m for m in masters}
        self.agents = {a.name: a for a in agents}
        self.clients = clients  # every node that is not a master (agents, frameworks, the log client)
        self.gap_ms = gap_ms
        self.allow_quorum_loss = allow_quorum_loss
        self.active = False
        self.base = (net.drop, net.dup)
        self.injected: list[str] = []
        self.counts: dict[str, int] = {}
        self.clock_jumps_ms = 0  # the sum of every jump's size, for the audit's offer timeout

    def start(self) -> None:
        self.active = True
        self.world.at(self.world.uniform_ms(*self.gap_ms), self._next)

    def _next(self) -> None:
        if not self.active:
            return
        kinds = list(KINDS)
        weights = list(WEIGHTS)
        while kinds:
            kind = self.world.rng.choices(kinds, weights)[0]
            i = kinds.index(kind)
            del kinds[i], weights[i]
            what = getattr(self, "_" + kind.replace("-", "_"))()
            if what:
                self.injected.append(f"{self.world.now} {kind}: {what}")
                self.counts[kind] = self.counts.get(kind, 0) + 1
                self.world.log("nem", f"{kind}: {what}")
                break
        self.world.at(self.world.uniform_ms(*self.gap_ms), self._next)

    # -- quorum ---------------------------------------------------------------------------------
    def quorum_survives(self) -> bool:
        """Some majority of masters is alive and connected pairwise."""
        if self.allow_quorum_loss:
            return True
        names = sorted(self.masters)
        quorum = len(names) // 2 + 1
        live = [n for n in names if self.masters[n].alive]
        for group in itertools.combinations(live, quorum):
            if all(self.net.connected(a, b) for a, b in itertools.combinations(group, 2)):
                return True
        return False

    # -- crashes ----------------------------------------------------------------------------------
    def _crash(self, name: str) -> str:
        master = self.masters[name]
        if not master.alive:
            return ""
        master.alive = False  # try it
        ok = self.quorum_survives()
        master.alive = True
        if not ok:
            return ""
        self.consensus.crash(name)
        down_ms = self.world.uniform_ms(500, 8_000)
        self.world.at(down_ms, self._restart_master, name)
        return f"{name} down for {down_ms} ms"

    def _restart_master(self, name: str) -> None:
        if not self.masters[name].alive:
            self.consensus.restart(name)
            self.world.log("nem", f"restarted {name}")

    def _leader_name(self) -> str | None:
        leader = self.consensus.current_leader()
        return leader.name if leader is not None else None

    def _kill_leader(self) -> str:
        name = self._leader_name()
        return self._crash(name) if name else ""

    def _kill_leader_proposing(self) -> str:
        if self._leader_name() is None or self.consensus.on_next_proposal is not None:
            return ""

        def hook(name: str, commit_delay_ms: int) -> None:
            self.world.at(self.world.uniform_ms(0, commit_delay_ms), self._crash_if_active, name)
        self.consensus.on_next_proposal = hook
        return "armed for the leader's next proposal"

    def _crash_if_active(self, name: str) -> None:
        if self.active:
            what = self._crash(name)
            if what:
                self.world.log("nem", f"killed the proposing leader: {what}")

    def _crash_master(self) -> str:
        leader = self._leader_name()
        others = [n for n in sorted(self.masters) if n != leader and self.masters[n].alive]
        return self._crash(self.world.rng.choice(others)) if others else ""

    def _crash_agent(self) -> str:
        live = [n for n in sorted(self.agents) if self.agents[n].alive]
        if not live:
            return ""
        name = self.world.rng.choice(live)
        self.agents[name].crash()
        self.net.changed()
        down_ms = self.world.uniform_ms(500, 12_000)
        self.world.at(down_ms, self._restart_agent, name)
        return f"{name} down for {down_ms} ms"

    def _restart_agent(self, name: str) -> None:
        agent = self.agents[name]
        if not agent.alive:
            agent.restart()
            self.net.changed()

    # -- the network ------------------------------------------------------------------------------
    def _cut_links(self, pairs: list[tuple[str, str]]) -> bool:
        new = [frozenset(p) for p in pairs if frozenset(p) not in self.net.cuts]
        self.net.cuts.update(new)
        if not self.quorum_survives():
            self.net.cuts.difference_update(new)
            return False
        self.net.changed()
        self.world.at(self.world.uniform_ms(1_000, 10_000), self._heal, new)
        return True

    def _heal(self, links: list[frozenset]) -> None:
        if not self.active:
            return
        self.net.cuts.difference_update(links)
        self.net.changed()

    def _partition(self) -> str:
        names = sorted(self.masters)
        f = (len(names) - 1) // 2
        size = self.world.rng.randint(1, f)
        leader = self._leader_name()
        if leader and self.world.chance(0.5):
            minority = {leader, *self.world.rng.sample([n for n in names if n != leader], size - 1)}
        else:
            minority = set(self.world.rng.sample(names, size))
        majority = [n for n in names if n not in minority]
        pairs = [(a, b) for a in sorted(minority) for b in majority]
        sides = []
        for client in self.clients:
            side = sorted(minority) if self.world.chance(0.3) else majority
            pairs += [(client.name, m) for m in names if m not in side]
            if side is not majority:
                sides.append(client.name)
        if not self._cut_links(pairs):
            return ""
        return f"{sorted(minority)} | {majority}; with the minority: {sides or 'no client'}"

    def _cut_link(self) -> str:
        names = sorted(self.masters)
        if self.world.chance(0.5):
            a, b = self.world.rng.sample(names, 2)
        else:
            a, b = self.world.rng.choice(self.clients).name, self.world.rng.choice(names)
        return f"{a} x {b}" if self._cut_links([(a, b)]) else ""

    def _stream_reset(self) -> str:
        open_streams = [c for c in self.clients if getattr(c, "stream", None) is not None and not c.stream.broken]
        if not open_streams:
            return ""
        client = self.world.rng.choice(open_streams)
        self.net._break(client.stream, client_hears=True)
        return f"{client.name}'s stream to {client.stream.server.name}"

    def _lossy(self) -> str:
        self.net.drop, self.net.dup = 0.2, 0.1
        ms = self.world.uniform_ms(1_000, 5_000)
        self.world.at(ms, self._calm)
        return f"for {ms} ms"

    def _calm(self) -> None:
        if self.active:
            self.net.drop, self.net.dup = self.base

    def _clock_jump(self) -> str:
        name = self._leader_name()
        if name is None:
            return ""
        jump = self.world.rng.choice((-1, 1)) * self.world.uniform_ms(1_000, 30_000)
        self.masters[name].clock_offset_ms += jump
        self.clock_jumps_ms += abs(jump)
        return f"{name}'s clock {jump:+d} ms"

    # -- the end of the safety phase --------------------------------------------------------------
    def heal_all(self) -> None:
        self.active = False
        self.consensus.on_next_proposal = None
        self.net.cuts.clear()
        self.net.drop, self.net.dup = 0.0, self.base[1]
        self.net.reset = 0.0
        for name in sorted(self.masters):
            if not self.masters[name].alive:
                self.consensus.restart(name)
        for name in sorted(self.agents):
            if not self.agents[name].alive:
                self.agents[name].restart()
        self.net.changed()
        self.world.log("nem", "healed: every link, every node, no loss")
