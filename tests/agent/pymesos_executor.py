"""An ordinary pymesos executor, run by the agent in tests (unmodified pymesos 0.3.15).

It answers a launched task with TASK_RUNNING; a framework message `x` with the message
`echo:x` and, for `finish`, TASK_FINISHED; a kill with TASK_KILLED. On shutdown it leaves a
`shutdown` file in its sandbox.
"""

import os
import sys

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data


class Echo(Executor):
    def __init__(self):
        self.tasks = []

    def registered(self, driver, executor_info, framework_info, agent_info):
        print("registered", executor_info["executor_id"]["value"], agent_info["id"]["value"], flush=True)

    def launchTask(self, driver, task):
        self.tasks.append(task["task_id"])
        driver.sendStatusUpdate({"task_id": task["task_id"], "state": "TASK_RUNNING", "message": "running"})

    def launchTaskGroup(self, driver, tasks):
        for task in tasks:
            self.launchTask(driver, task)

    def killTask(self, driver, task_id):
        self.tasks.remove(task_id)
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED", "message": "killed by the executor"})

    def frameworkMessage(self, driver, message):
        data = decode_data(message)
        print("message", data, flush=True)
        driver.sendFrameworkMessage(encode_data(b"echo:" + data))
        if data == b"finish":
            for task_id in self.tasks:
                driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_FINISHED"})

    def shutdown(self, driver):
        with open(os.path.join(os.environ["MESOS_DIRECTORY"], "shutdown"), "w") as f:
            f.write("yes\n")
        print("shutdown", flush=True)


if __name__ == "__main__":
    MesosExecutorDriver(Echo(), use_addict=True).run()
    sys.exit(0)
