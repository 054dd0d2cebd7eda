"""One Ray cluster for the whole session: a head and two worker nodes with (fake) GPUs.

Starting Ray costs seconds, a multi-node cluster tens of seconds; every test that needs Ray
shares this one. Nodes a test adds (to remove them mid-run) it removes itself.

Token authentication is on, as on a user's cluster: ``RAY_AUTH_MODE=token`` and a fresh
``RAY_AUTH_TOKEN`` are in the environment before the nodes start, and stay there for the session,
so this process, the nodes and every ``reelfarm`` subprocess a test starts share the token. A
client without it is refused (test_ray_address.py, ``test_the_cluster_refuses_a_client_...``).
"""

from __future__ import annotations

import secrets

import pytest

#: Custom resource standing for a GPU type, as a KubeRay worker group would advertise it.
GPU_TYPE = "accelerator_type:H100"


@pytest.fixture(scope="session")
def ray_auth_token():
    """``RAY_AUTH_MODE=token`` and a fresh ``RAY_AUTH_TOKEN`` in this session's environment."""
    mp = pytest.MonkeyPatch()
    token = secrets.token_hex(32)
    mp.setenv("RAY_AUTH_MODE", "token")
    mp.setenv("RAY_AUTH_TOKEN", token)
    mp.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    yield token
    mp.undo()


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint, ray_auth_token):
    # The S3 test server's endpoint and credentials, and the cluster's token, are in the
    # environment before the nodes start, so renderer actors (worker processes) can use s3://
    # stores too.
    import ray
    from ray._private.authentication_test_utils import reset_auth_token_state
    from ray.cluster_utils import Cluster

    reset_auth_token_state()  # Ray caches the auth mode and token per process: read them now
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
