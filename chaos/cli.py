"""`mesos-es chaos sim` and `mesos-es chaos run`: the two harnesses' command lines."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="chaos_command", required=True)
    from chaos.sim.cli import add_arguments as add_sim_arguments
    from chaos.sim.cli import run as run_sim

    sim = commands.add_parser("sim", help="deterministic simulation of a whole cluster, one seed a run")
    add_sim_arguments(sim)
    sim.set_defaults(run=run_sim)
    from chaos.procs.cli import add_arguments as add_run_arguments
    from chaos.procs.cli import run as run_procs

    procs = commands.add_parser("run", help="real masters, agents and frameworks under a seeded fault schedule")
    add_run_arguments(procs)
    procs.set_defaults(run=run_procs)
