"""The flow compiled for each cloud profile into its orchestrator's spec, without deploying.

Kubernetes profiles: ``argo-workflows create --only-json`` (an Argo WorkflowTemplate;
the @parallel CPT steps become JobSets). It needs an S3 datastore: a moto server on
localhost plays AWS. Asserts per step: GPUs, vCPUs, memory, /dev/shm, node selector and
tolerations, retries, and the gang (JobSet) of the CPT steps; that no secret from
the environment is written into a spec; and the template's name, which `@project(name="azllm")`
makes `azllm.<branch>.azllmflow` (`--branch`/`--production` deploy side by side). About 20 s.

Batch profiles: Metaflow 2.19 refuses to compile a flow with @parallel steps
(``num_parallel``) for Step Functions ("not supported currently"), and the CPT steps are
@parallel so that one flow serves 1 and N nodes. The test asserts that refusal and
checks the Batch decorators (queue, GPUs, /dev/shm, retries) on Metaflow's step objects.
Such flows run on Batch with ``run``: Metaflow's orchestrator on your machine submits each
step as a Batch job, a multi-node parallel job for @parallel steps.

    .venv/bin/python -m pytest -q tests/test_compile.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_compute import FLOW_FILE, compute_decorators, flow_steps_and_parallel, mutated_flow_class

from azllm.compute.profile import load_compute_profile
from azllm.train.phase import free_port
from conftest import REPO_ROOT, TINY_PRESET

QUEUES = ("azllm-cpu", "azllm-p4d", "azllm-p5", "azllm-g5")
FAKE_SECRETS = {"HF_TOKEN": "hf_fakeCompileToken0123456789", "AWS_SECRET_ACCESS_KEY": "fakeSecretKeyForCompile0123"}


@pytest.fixture(scope="module")
def fake_aws(tmp_path_factory):
    """A moto server with an S3 bucket, a Batch compute environment and the profiles' job queues."""
    if shutil.which("moto_server", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("moto_server is missing: pip install -r requirements-test.txt (moto[server])")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": FAKE_SECRETS["AWS_SECRET_ACCESS_KEY"],
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    try:
        import boto3

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name="us-east-1")
        for _ in range(100):
            try:
                session.client("s3", endpoint_url=endpoint).create_bucket(Bucket="azllm-ci")
                break
            except Exception:  # noqa: BLE001 - server still starting
                time.sleep(0.1)
        iam, ec2, batch = (session.client(s, endpoint_url=endpoint) for s in ("iam", "ec2", "batch"))
        role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        profile = iam.create_instance_profile(InstanceProfileName="ecs-instance")["InstanceProfile"]["Arn"]
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="batch", Description="batch", VpcId=vpc)["GroupId"]
        ce = batch.create_compute_environment(
            computeEnvironmentName="azllm", type="MANAGED", state="ENABLED", serviceRole=role,
            computeResources={"type": "EC2", "minvCpus": 0, "maxvCpus": 1024, "desiredvCpus": 0,
                              "instanceTypes": ["optimal"], "subnets": [subnet], "securityGroupIds": [sg],
                              "instanceRole": profile})["computeEnvironmentArn"]
        for queue in QUEUES:
            batch.create_job_queue(jobQueueName=queue, state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}])
        yield {"env": env, "batch": batch}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def compile_flow(fake_aws, tmp_path: Path, profile: str, command: list[str]) -> subprocess.CompletedProcess:
    preset = tmp_path / f"{profile}.toml"
    preset.write_text(f'inherit = "{TINY_PRESET}"\n[compute]\nprofile = "{profile}"\n')
    env = {**os.environ, **fake_aws["env"], **FAKE_SECRETS,
           "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_DATASTORE_SYSROOT_S3": "s3://azllm-ci/metaflow",
           "METAFLOW_S3_ENDPOINT_URL": fake_aws["env"]["AWS_ENDPOINT_URL"], "METAFLOW_DEFAULT_METADATA": "local",
           "METAFLOW_KUBERNETES_NAMESPACE": "azllm",
           "METAFLOW_SFN_IAM_ROLE": "arn:aws:iam::123456789012:role/azllm-sfn",
           "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": "arn:aws:iam::123456789012:role/azllm-batch",
           "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": "arn:aws:iam::123456789012:role/azllm-events",
           "METAFLOW_SFN_DYNAMO_DB_TABLE": "azllm-sfn"}
    return subprocess.run([sys.executable, str(FLOW_FILE), "--config", "config", str(preset), *command],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_no_secrets(text: str) -> None:
    for name, value in FAKE_SECRETS.items():
        assert value not in text, f"{name} from the environment was written into the spec"


def _mib(quantity: str) -> float:
    """Kubernetes quantities as Metaflow writes them: '64000Mi', '1000000.0M'."""
    m = re.fullmatch(r"([\d.]+)(Mi|M)", quantity)
    assert m, quantity
    return float(m.group(1)) * (1 if m.group(2) == "Mi" else 1e6 / 2**20)


def _pod_specs(template: dict) -> list[dict]:
    """The pod specs of an Argo template: a plain container, or each replicated job of a JobSet."""
    if "container" in template:
        return [{"containers": [template["container"]], "nodeSelector": template.get("nodeSelector"),
                 "tolerations": template.get("tolerations"), "volumes": template.get("volumes", [])}]
    import yaml

    manifest = yaml.safe_load(re.sub(r"\{\{.*?\}\}", "ARGO_EXPR", template["resource"]["manifest"]))
    assert manifest["kind"] == "JobSet", manifest["kind"]
    return [rj["template"]["spec"]["template"]["spec"] for rj in manifest["spec"]["replicatedJobs"]]


def compile_for(fake_aws, tmp_path, profile: str, command: list[str]):
    """Compile the flow for `profile`: (proc, output, steps, @parallel steps, profile)."""
    steps, parallel = flow_steps_and_parallel()
    prof = load_compute_profile(profile)
    assert not [s for s in steps if prof.for_step(s).nodes > 1 and s not in parallel], "multi-node step not @parallel"
    proc = compile_flow(fake_aws, tmp_path, profile, command)
    return proc, proc.stdout + proc.stderr, steps, parallel, prof


# ---------------------------------------------------------------------------
# Kubernetes: Argo Workflows
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["kubernetes-a100", "kubernetes-h100"])
def test_argo_spec_per_step(fake_aws, tmp_path, profile):
    proc, out, steps, parallel, prof = compile_for(fake_aws, tmp_path, profile,
                                                   ["argo-workflows", "create", "--only-json"])
    assert proc.returncode == 0, out[-3000:]
    assert_no_secrets(out)
    spec = json.loads(proc.stdout[proc.stdout.index("{"):])
    # @project(name="azllm"): the deployment is named project.branch.flow (the user's branch here)
    assert re.fullmatch(r"azllm\.user\.[a-z0-9.-]+\.azllmflow", spec["metadata"]["name"]), spec["metadata"]["name"]
    templates = {t["name"]: t for t in spec["spec"]["templates"]}
    for step in steps:
        want = prof.for_step(step)
        template = templates[step.replace("_", "-")]
        pods = _pod_specs(template)
        if step in parallel:
            manifest = template["resource"]["manifest"]
            assert "name: control" in manifest and "name: worker" in manifest, step
            # workers = num_parallel - 1, num_parallel set at runtime by the step before (from the profile)
            assert re.search(r"replicas: \{\{=asInt\(inputs.parameters.workerCount\)\}\}", manifest), step
        else:
            assert len(pods) == 1 and "resource" not in template, f"{step} is not a plain pod"
        for pod in pods:
            res = pod["containers"][0]["resources"]
            gpus = int(res.get("limits", {}).get("nvidia.com/gpu", 0))
            assert gpus == want.gpus_per_node, (step, res)
            assert float(res["requests"]["cpu"]) == want.cpu, (step, res)
            assert _mib(res["requests"]["memory"]) == pytest.approx(want.memory * 1e6 / 2**20), (step, res)
            if want.gpu_type:
                assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": want.instance_type}, step
                assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            shm = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
            if want.shared_memory:
                assert shm and _mib(shm[0]["emptyDir"]["sizeLimit"]) == want.shared_memory, (step, shm)
            else:  # Metaflow mounts /dev/shm anyway, without a size limit
                assert all("sizeLimit" not in v["emptyDir"] for v in shm), step
        assert int(template["retryStrategy"]["limit"]) == want.retries, step


# ---------------------------------------------------------------------------
# AWS Batch: Step Functions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["batch-a100", "batch-h100", "case-study"])
def test_step_functions_spec_per_step(fake_aws, tmp_path, profile):
    proc, out, steps, parallel, prof = compile_for(fake_aws, tmp_path, profile,
                                                   ["step-functions", "create", "--only-json"])
    assert parallel == {"cpt_embeddings", "cpt_full"}
    # Metaflow cannot deploy @parallel (num_parallel) to Step Functions; `run` with @batch steps works
    # (multi-node parallel jobs). It must say so; then check Metaflow's decorator objects instead.
    assert proc.returncode != 0 and "@parallel decorator(s) to AWS Step Functions is not supported" in out
    assert_no_secrets(out)
    decos = compute_decorators(mutated_flow_class(profile))
    for step in steps:
        want = prof.for_step(step)
        assert "kubernetes" not in decos[step] and decos[step]["batch"]["queue"] == want.queue, step
        assert decos[step]["resources"].get("gpu") == (want.gpus_per_node or None), step
        assert decos[step]["resources"].get("shared_memory") == (want.shared_memory or None), step
        assert ("parallel" in decos[step]) == (step in parallel), step
        assert decos[step].get("retry", {}).get("times", 0) == want.retries, step
