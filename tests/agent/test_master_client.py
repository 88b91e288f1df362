"""Finding the leader, re-registering, pings, stale streams and removal."""

from __future__ import annotations

import asyncio

from tests.agent.conftest import command_task
from tests.support.fake_master import FakeMaster


async def test_the_agent_follows_redirects_to_the_leader_and_back(make_agent):
    standby = await FakeMaster(name="standby").start()
    leader = await FakeMaster(name="leader").start()
    down = FakeMaster(name="down")  # never started: connection refused
    try:
        standby.redirect_to = leader.address
        agent = await make_agent([down, standby])
        agent_id = await leader.wait_registered()
        assert standby.requests >= 1 and agent.agent.client.leader == leader.address
        # Leadership moves: the old leader redirects, and the agent re-registers with its id.
        standby.redirect_to, leader.redirect_to = None, standby.address
        leader.close_stream(agent_id)
        assert await standby.wait_registered() == agent_id
        assert standby.registrations[-1]["agent_id"] == {"value": agent_id}
        # Tasks keep flowing through the new leader.
        standby.run_task(agent_id, command_task("after", "true"))
        await standby.wait_state("after", "TASK_FINISHED")
    finally:
        await standby.stop()
        await leader.stop()


async def test_no_leader_anywhere_means_retrying_until_there_is_one(make_agent):
    master = await FakeMaster().start()
    try:
        master.unavailable = True
        await make_agent([master])
        await master.wait_for(lambda: master.requests >= 3, 10, "retries")
        assert not master.streams
        master.unavailable = False
        await master.wait_registered(timeout=10)
    finally:
        await master.stop()


async def test_pings_are_answered_and_a_silent_stream_is_abandoned(make_agent):
    master = await FakeMaster(ping_interval_s=0.3).start()
    try:
        await make_agent([master])
        agent_id = await master.wait_registered()
        master.ping(agent_id)
        await master.wait_for(lambda: any(c["type"] == "PONG" for c in master.calls), 5, "a PONG")
        pong = next(c for c in master.calls if c["type"] == "PONG")
        assert pong["agent_id"] == {"value": agent_id}
        # No event for 3 ping intervals: the agent registers again, with its id.
        await master.wait_for(lambda: len(master.registrations) >= 2, 5, "a re-registration")
        assert master.registrations[1]["agent_id"] == {"value": agent_id}
    finally:
        await master.stop()


async def test_a_stale_stream_id_makes_the_agent_register_again(master, make_agent):
    agent = await make_agent([master])
    agent_id = await master.wait_registered()
    master.streams[agent_id].stream_id = "changed-behind-its-back"
    master.ping(agent_id)  # the PONG gets 403
    await master.wait_for(lambda: len(master.registrations) >= 2, 10, "a re-registration")
    assert agent.agent.agent_id == agent_id


async def test_a_removed_agent_discards_its_state_and_registers_as_new(master, make_agent):
    agent = await make_agent([master])
    agent_id = await master.wait_registered()
    master.run_task(agent_id, command_task("doomed", "sleep 60"))
    await master.wait_state("doomed", "TASK_RUNNING")
    pid = agent.agent.tasks[("fw-1", "doomed")].pid
    master.removed_agents.add(agent_id)
    master.close_stream(agent_id)
    await master.wait_for(lambda: len(master.streams) == 1 and agent_id not in master.streams, 10, "a new agent")
    assert agent.agent.agent_id != agent_id and not agent.agent.tasks
    assert "agent_id" not in master.registrations[-1] and master.registrations[-1]["tasks"] == []
    from tests.support.procs import pid_alive

    await master.wait_for(lambda: not pid_alive(pid), 5, "the old task to be killed")


async def test_unregister_kills_the_tasks_and_forgets_the_agent(master, make_agent):
    from tests.support.procs import pid_alive

    agent = await make_agent([master])
    agent_id = await master.wait_registered()
    master.run_task(agent_id, command_task("going", "sleep 60"))
    await master.wait_state("going", "TASK_RUNNING")
    await master.wait_for(lambda: (agent.config.work_dir / "meta" / "agent.json").exists(), 5, "the id on disk")
    pid = agent.agent.tasks[("fw-1", "going")].pid
    await agent.agent.unregister()
    assert any(c["type"] == "UNREGISTER" and c["agent_id"] == {"value": agent_id} for c in master.calls)
    assert not pid_alive(pid) and not agent.agent.tasks
    assert not (agent.config.work_dir / "meta" / "agent.json").exists()


async def test_a_silent_leader_is_left_for_a_master_that_says_it_leads(make_agent):
    """A leader frozen or cut off keeps the stream open and says nothing. Once a ping is
    overdue the agent asks the other masters, and one that leads now gets it at once, long
    before the stream would be given up (three ping intervals)."""
    frozen = await FakeMaster(name="frozen", ping_interval_s=2.0).start()
    other = await FakeMaster(name="other").start()
    try:
        other.redirect_to = frozen.address  # a standby, until the election
        agent = await make_agent([frozen, other])
        agent_id = await frozen.wait_registered()
        other.redirect_to = None  # elected; the frozen one sends nothing more
        registered_at = asyncio.get_running_loop().time()
        assert await other.wait_registered(timeout=10) == agent_id
        waited = asyncio.get_running_loop().time() - registered_at
        assert 2.5 < waited < 5.0, waited  # 1.5 ping intervals, not 3
        assert agent.agent.client.leader == other.address
        assert len(frozen.registrations) == 1
    finally:
        await frozen.stop()
        await other.stop()


async def test_an_overdue_ping_with_no_other_leader_keeps_the_stream(make_agent):
    master = await FakeMaster(ping_interval_s=0.4).start()
    standby = await FakeMaster(name="standby").start()
    try:
        standby.redirect_to = master.address
        await make_agent([master, standby])
        agent_id = await master.wait_registered()
        for _ in range(4):  # a ping every 0.8 s: overdue (0.6 s) each time, never 3 intervals (1.2 s) late
            await asyncio.sleep(0.8)
            master.ping(agent_id)
        assert len(master.registrations) == 1 and standby.registrations == []
        assert standby.health_requests >= 3 and standby.requests == 0  # asked who leads, each time
    finally:
        await master.stop()
        await standby.stop()
