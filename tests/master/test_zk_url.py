"""`--zk` URLs: what the master and `cluster up` accept."""

import pytest

from mesos_es.cli import build_parser, master_config
from mesos_es.master.config import ConfigError
from mesos_es.master.zk import parse_zk_url


@pytest.mark.parametrize(("url", "hosts", "path"), [
    ("zk://127.0.0.1:2181/mesos", "127.0.0.1:2181", "/mesos"),
    ("zk://a:1,b:2,c:3/mesos/prod/", "a:1,b:2,c:3", "/mesos/prod"),
])
def test_good_urls(url, hosts, path):
    assert parse_zk_url(url) == (hosts, path)


@pytest.mark.parametrize("url", [
    "127.0.0.1:2181/mesos", "zk://127.0.0.1:2181", "zk://127.0.0.1:2181/", "zk://127.0.0.1/mesos",
    "zk://u:p@127.0.0.1:2181/mesos", "zk://127.0.0.1:0/mesos", "zk://a:1,/mesos",
])
def test_bad_urls(url):
    with pytest.raises(ConfigError):
        parse_zk_url(url)


def test_master_flag(tmp_path):
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--zk", "zk://127.0.0.1:2181/mesos"])
    assert master_config(args).zk == "zk://127.0.0.1:2181/mesos"
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path)])
    assert master_config(args).zk is None
    args = build_parser().parse_args(["master", "--work-dir", str(tmp_path), "--zk", "127.0.0.1:2181"])
    with pytest.raises(ConfigError):
        master_config(args)


def test_cluster_up_flag():
    assert build_parser().parse_args(["cluster", "up"]).zk is None
    assert build_parser().parse_args(["cluster", "up", "--zk"]).zk is True
    assert build_parser().parse_args(["cluster", "up", "--zk", "10.0.0.1:2181"]).zk == "10.0.0.1:2181"
