"""One Ray cluster for the whole session: a head and two worker nodes with (fake) GPUs.

Starting Ray costs seconds, a multi-node cluster tens of seconds; every test that needs Ray
shares this one. Nodes a test adds (to remove them mid-run) it removes itself.
"""

from __future__ import annotations

import pytest

#: Custom resource standing for a GPU type, as a KubeRay worker group would advertise it.
GPU_TYPE = "accelerator_type:H100"


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint):
    # The S3 test server's endpoint and credentials are in the environment before the nodes
    # start, so renderer actors (worker processes) can use s3:// stores too.
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=2, num_gpus=2, resources={GPU_TYPE: 2})
    cluster.add_node(num_cpus=2, num_gpus=2)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
