"""`cluster up` configuration and the master's command line."""

import subprocess
import sys

import pytest

from mesos_es.cli import build_parser, master_config
from mesos_es.cluster.up import load_config, master_command, master_specs
from mesos_es.master.config import ConfigError, Peer, parse_peers


def test_the_embedded_default_is_three_masters_from_5050():
    config = load_config(None)
    specs = master_specs(config["cluster"])
    assert [s.http for s in specs] == ["127.0.0.1:5050", "127.0.0.1:5051", "127.0.0.1:5052"]
    assert [s.raft for s in specs] == ["127.0.0.1:6050", "127.0.0.1:6051", "127.0.0.1:6052"]


def test_a_config_file_overlays_the_default(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[cluster]\nmasters = 5\n[master]\nsnapshot_every = 7\n')
    config = load_config(path)
    assert config["cluster"]["masters"] == 5 and config["cluster"]["base_port"] == 5050
    assert config["master"]["snapshot_every"] == 7
    path.write_text("[nonsense]\nx = 1\n")
    with pytest.raises(ValueError, match="unknown table"):
        load_config(path)


def test_every_master_flag_the_cluster_passes_is_accepted_by_the_master(tmp_path):
    config = load_config(None)
    config["cluster"]["work_dir"] = str(tmp_path)
    specs = master_specs(config["cluster"])
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    argv = master_command(specs[1], specs, secret, config)
    args = build_parser().parse_args(argv[3:])  # after `python -m mesos_es`
    master = master_config(args)
    assert master.address == "127.0.0.1:5051" and master.raft_secret == "s3cret"
    assert [p.http for p in master.peers] == ["127.0.0.1:5050", "127.0.0.1:5052"]


def test_peers_parse_with_default_and_explicit_raft_addresses():
    assert parse_peers("h:5050, h:5051=r:7000") == (Peer("h:5050", "h:6050"), Peer("h:5051", "r:7000"))
    with pytest.raises(ConfigError):
        parse_peers("no-port")


def test_a_multi_master_cluster_needs_a_shared_secret(tmp_path):
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--peers", "127.0.0.1:5051"])
    with pytest.raises(ConfigError, match="raft-secret-file"):
        master_config(args)


def test_a_single_master_makes_its_own_secret_once(tmp_path):
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path)])
    first = master_config(args).raft_secret
    assert master_config(args).raft_secret == first
    assert (tmp_path / "raft.secret").stat().st_mode & 0o777 == 0o600


def test_the_command_line_reports_bad_flags_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mesos_es", "master", "--address", "nonsense",
                             "--work-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "bad address" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "mesos_es", "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "mesos-es 0.1.0"


def test_the_default_cluster_has_two_agents_each_with_a_slice_of_the_machine(tmp_path):
    from mesos_es.cli import agent_config
    from mesos_es.cluster.up import agent_command, agent_specs, machine_slice
    from mesos_es.core import resources as res

    config = load_config(None)
    config["cluster"]["work_dir"] = str(tmp_path)
    agents = agent_specs(config["cluster"])
    assert [a.http for a in agents] == ["127.0.0.1:5150", "127.0.0.1:5151"]
    share = machine_slice(2, tmp_path)
    parsed = [res.parse_text(a.resources) for a in agents]
    assert all(p.scalar("cpus") == share["cpus"] and p.scalar("mem") == share["mem"] for p in parsed)
    assert [res.to_text(p.filter(lambda k: k.name == "ports")) for p in parsed] == [
        "ports:[31000-31999]", "ports:[32000-32999]"]
    masters = master_specs(config["cluster"])
    argv = agent_command(agents[1], masters, config)
    args = build_parser().parse_args(argv[3:])
    agent = agent_config(args)
    assert agent.masters == ("127.0.0.1:5050", "127.0.0.1:5051", "127.0.0.1:5052")
    assert agent.port == 5151 and agent.work_dir == tmp_path / "agent-2"
    assert agent.resources == parsed[1] and agent.reconfiguration_policy == "equal"


def test_agent_flags_accept_mesos_names_dashed_aliases_and_durations(tmp_path):
    from mesos_es.cli import agent_config

    args = build_parser().parse_args([
        "agent", "--master", "h:5050", "--work-dir", str(tmp_path), "--resources", "cpus:3",
        "--executor_registration_timeout", "2mins", "--executor-shutdown-grace-period", "500ms"])
    config = agent_config(args)
    assert config.resources.scalar("cpus") == 3 and config.resources.scalar("mem") > 0  # the rest is detected
    assert config.executor_registration_timeout_s == 120 and config.executor_shutdown_grace_period_s == 0.5
    result = subprocess.run([sys.executable, "-m", "mesos_es", "agent", "--master", "nonsense",
                             "--work_dir", str(tmp_path)], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "bad master address" in result.stderr and "Traceback" not in result.stderr


def test_raft_pre_vote_is_on_unless_switched_off(tmp_path):
    from mesos_es.master.main import raft_config

    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path)])
    assert raft_config(master_config(args)).pre_vote is True
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--raft-pre-vote", "off"])
    assert raft_config(master_config(args)).pre_vote is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["master", "--raft-pre-vote", "maybe"])


def test_the_snapshot_suffix_ratio_reaches_the_master_and_is_checked(tmp_path):
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--snapshot-suffix-ratio", "0.5"])
    assert master_config(args).snapshot_suffix_ratio == 0.5
    for bad in ("-1", "nan"):
        args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--snapshot-suffix-ratio", bad])
        with pytest.raises(ConfigError, match="snapshot-suffix-ratio"):
            master_config(args)


def test_the_raft_stall_dump_is_off_unless_asked_for_and_checked(tmp_path):
    from mesos_es.master.main import raft_config

    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path)])
    assert raft_config(master_config(args)).stall_dump_s == 0
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--raft-stall-dump-s", "1.5"])
    assert raft_config(master_config(args)).stall_dump_s == 1.5
    for bad in ("-1", "nan"):
        args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--raft-stall-dump-s", bad])
        with pytest.raises(ConfigError, match="raft-stall-dump-s"):
            master_config(args)


def test_raft_runs_in_its_own_process_unless_switched_off(tmp_path):
    from mesos_es.master.main import raft_config

    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--election-timeout-max-ms", "3000"])
    config = raft_config(master_config(args))
    assert config.node_process is True
    assert config.master_timeout == 6.0  # twice the longest election timeout
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--raft-process", "off",
                                      "--raft-master-timeout-s", "2.5"])
    config = raft_config(master_config(args))
    assert config.node_process is False and config.master_timeout == 2.5
    for bad in ("0", "nan", "-1"):
        args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--raft-master-timeout-s", bad])
        with pytest.raises(ConfigError, match="raft-master-timeout-s"):
            master_config(args)
