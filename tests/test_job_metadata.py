"""What a submitted job keeps about its S3 endpoint: never the user info of the URL given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REELFARM = str(Path(sys.executable).with_name("reelfarm"))
HEIST = Path(__file__).resolve().parent.parent / "manifests" / "heist.yaml"


def test_the_endpoint_user_info_is_neither_stored_nor_passed_to_the_job(
        ray_head, s3_endpoint, s3_url, tmp_path):
    from ray.job_submission import JobSubmissionClient

    host = s3_endpoint.removeprefix("http://")
    with_user = f"http://admin:hunter2-secret@{host}"
    env = ray_head.client_env(AWS_ENDPOINT_URL=None, AWS_ENDPOINT_URL_S3=None)
    r = subprocess.run([REELFARM, "submit", str(HEIST), "--store", s3_url, "--out",
                        str(tmp_path / "out"), "--s3-endpoint", with_user],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    try:
        client = JobSubmissionClient(ray_head.address,
                                     headers={"Authorization": f"Bearer {ray_head.token}"})
        info = client.get_job_info(job_id)
        kept = json.dumps({"metadata": info.metadata, "entrypoint": info.entrypoint})
        assert "hunter2-secret" not in kept and "admin" not in kept
        assert any(v == s3_endpoint for v in (info.metadata or {}).values())  # still usable
        assert "hunter2-secret" not in r.stdout + r.stderr
    finally:
        subprocess.run([REELFARM, "cancel", job_id], env=env, capture_output=True, timeout=120)
