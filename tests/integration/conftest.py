import pytest

from tests.support.procs import ProcessCluster


@pytest.fixture
def make_cluster(tmp_path):
    """Start real clusters; all their processes are killed at the end of the test."""
    clusters = []

    def make(**kwargs) -> ProcessCluster:
        cluster = ProcessCluster(tmp_path / f"cluster{len(clusters)}", **kwargs)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()
