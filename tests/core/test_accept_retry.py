"""A copy of an ACCEPT that was already applied (the scheduler retried after a lost 202, or
the network duplicated the request) finds its offers used; it must not tell the framework
that the tasks the first copy launched were dropped. Found by `mesos-es chaos sim`."""

from mesos_es.pb import events_pb2 as ev
from mesos_es.pb import mesos_pb2 as S
from tests.core.test_cluster import World, res  # noqa: F401 (the world fixture's class)
from tests.core.test_cluster import world  # noqa: F401 (a pytest fixture)


def test_a_second_copy_of_an_accept_reports_only_the_tasks_it_did_not_launch(world):  # noqa: F811
    world.subscribe()
    world.register()
    world.offer()
    world.launch("t1")
    assert world.task().state == S.TASK_STAGING
    again = world.apply(offers_accepted=ev.OffersAccepted(framework_id="F1", offer_ids=["O1"], operations=[
        ev.Operation(type="LAUNCH", task_infos=[S.TaskInfo(task_id=t, name=t, resources=res("cpus:1"))
                                                for t in ("t1", "t2")])]))
    assert [(e.status.task_id, S.TaskState.Name(e.status.state)) for e in again.effects] == [("t2", "TASK_DROPPED")]
    assert world.task().state == S.TASK_STAGING and set(world.cluster.frameworks["F1"].tasks) == {"t1"}
