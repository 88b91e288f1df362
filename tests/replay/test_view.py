"""The replay's view of the allocator's inputs is the leader's (mesos_es/replay/view.py
mirrors mesos_es/master/leader.py, which the replay does not import)."""

from mesos_es.master import leader
from mesos_es.replay import view
from mesos_es.replay.synthetic import SyntheticCluster


def test_the_view_is_the_leaders():
    cluster = SyntheticCluster(seed=5, agents=6)
    for i, _ in enumerate(cluster.events(3000)):
        if i % 500 == 499:
            state = cluster.state
            assert view.allocation_inputs(state, cluster.now_ms) == leader.allocation_inputs(state, cluster.now_ms)
