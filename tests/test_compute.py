"""Compute profiles -> step decorators, without a cloud.

Covers: every shipped profile loads; for each profile every step of the flow carries
exactly the decorators the profile asks for (checked on Metaflow's own step-decorator
objects after the FlowMutator ran), never @kubernetes and @batch together; profile
errors name the step and the field; the cost table; the torchrun layout of a
@parallel node. A few seconds.

    .venv/bin/python -m pytest -q tests/test_compute.py

``AZLLM_TEST_FLOW=/path/to/azllm_flow.py`` runs the flow-level checks against another
flow file (e.g. a patched copy before it lands).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from azllm.compute.distributed import TorchrunLayout, num_nodes, rendezvous_port, torchrun_layout
from azllm.compute.mutator import compute_plan, step_decorators
from azllm.compute.profile import (
    GPU_TYPES,
    PARALLEL_STEPS,
    ComputeProfile,
    StepCompute,
    hourly_cost,
    known_profiles,
    load_compute_profile,
    load_prices,
)
from azllm.config import ComputeConfig, ConfigError, parse_config_text
from conftest import FLOW, TINY_PRESET, run_flow

FLOW_FILE = Path(os.environ.get("AZLLM_TEST_FLOW", FLOW))
REQUIRED_PROFILES = ("local", "kubernetes-a100", "kubernetes-h100", "batch-a100", "batch-h100", "case-study")
COMPUTE_DECORATORS = {"resources", "kubernetes", "batch", "retry", "parallel", "secrets"}


def tiny_config(profile: str) -> dict:
    """The tiny preset with another compute profile, as the flow's Config parser returns it."""
    text = f'inherit = "{TINY_PRESET}"\n[compute]\nprofile = "{profile}"\n'
    return parse_config_text(text, path=TINY_PRESET).to_dict()


def mutated_flow_class(profile: str, flow_file: Path = FLOW_FILE):
    """A fresh copy of the flow class after the FlowMutator ran with `profile`.

    Runs Metaflow's own config processing (what the CLI does before any command) on a
    freshly imported module, so every profile sees undecorated steps. Uses Metaflow
    2.19's internal ``_flow_state``/``_process_config_decorators``: if an upgrade breaks
    this helper, the compile tests (tests/test_compile.py) still cover the same ground.
    """
    from metaflow import parameters
    from metaflow.flowspec import FlowStateItems
    from metaflow.user_configs.config_parameters import ConfigValue

    module_name = "_azllm_flow_" + re.sub(r"\W", "_", profile)
    spec = importlib.util.spec_from_file_location(module_name, flow_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module.AzLLMFlow, "_flow_cls", module.AzLLMFlow)
    cfg = tiny_config(profile)
    cls._flow_state[FlowStateItems.CONFIGS] = {"config": (cfg, False)}
    with parameters.flow_context(cls):
        cls._process_config_decorators({"config": ConfigValue(cfg)})
    return cls


def compute_decorators(cls) -> dict[str, dict[str, dict]]:
    """{step: {decorator name: attributes}} for the compute-related decorators of each step."""
    out = {}
    for step in cls._steps:
        decos = [d for d in step.decorators if d.name in COMPUTE_DECORATORS]
        names = [d.name for d in decos]
        assert len(names) == len(set(names)), f"step {step.name}: duplicate decorators {names}"
        out[step.name] = {d.name: dict(d.attributes) for d in decos}
    return out


def flow_steps_and_parallel(flow_file: Path = FLOW_FILE) -> tuple[list[str], set[str]]:
    cls = mutated_flow_class("local", flow_file)
    decos = compute_decorators(cls)
    return list(decos), {name for name, d in decos.items() if "parallel" in d}


# ---------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------


def test_every_required_profile_ships_and_loads():
    assert set(REQUIRED_PROFILES) <= set(known_profiles())
    for name in known_profiles():
        profile = load_compute_profile(name)
        for step in ("start", "train_tokenizer", "cpt_full", "sft_lora", "evaluate"):
            profile.for_step(step)
    assert load_compute_profile("local").for_step("cpt_full") == StepCompute()


def test_pack_arm_is_a_cpu_step_with_the_data_steps_capacity():
    """Packing runs once per arm on CPU nodes, never on the GPU nodes that wait for it."""
    steps, _ = flow_steps_and_parallel()
    assert "pack_arm" in steps and "start_arm" not in steps
    for name in REQUIRED_PROFILES:
        c = load_compute_profile(name).for_step("pack_arm")
        assert c.gpu_type == "" and c.gpus_per_node == 0, name
        assert c.instance_type == ""
        if c.is_remote:
            assert c.cpu >= 16 and c.memory >= 64000, (name, c)
            assert "gpu" not in dict(step_decorators(c))["resources"]


def test_case_study_profile_matches_the_case_study():
    p = load_compute_profile("case-study")
    assert p.for_step("train_tokenizer").gpu_type == ""
    for step in PARALLEL_STEPS:
        c = p.for_step(step)
        assert (c.backend, c.instance_type, c.gpus_per_node, c.nodes) == ("batch", "p4d.24xlarge", 8, 2)
    for step in ("sft_lora", "evaluate"):
        c = p.for_step(step)
        assert (c.instance_type, c.gpus_per_node, c.nodes) == ("g5.8xlarge", 1, 1)


def test_local_profile_adds_nothing_that_needs_a_cloud():
    steps, parallel = flow_steps_and_parallel()
    plan = compute_plan(load_compute_profile("local"), steps, parallel)
    assert all(decos == [] for decos in plan.values()), plan


def test_kubernetes_step_decorators():
    c = load_compute_profile("kubernetes-a100").for_step("cpt_full")
    decos = dict(step_decorators(c))
    assert list(decos) == ["resources", "kubernetes", "retry"]
    assert decos["resources"] == {"cpu": 90, "memory": 1000000, "gpu": 8, "disk": 500000, "shared_memory": 64000}
    assert decos["kubernetes"]["node_selector"] == {"node.kubernetes.io/instance-type": "p4d.24xlarge"}
    assert decos["kubernetes"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    # a CPU step: no GPU, no node selector
    cpu = dict(step_decorators(load_compute_profile("kubernetes-a100").for_step("train_tokenizer")))
    assert "gpu" not in cpu["resources"] and "node_selector" not in cpu["kubernetes"]


def test_batch_step_decorators():
    p = load_compute_profile("case-study")
    full = dict(step_decorators(p.for_step("cpt_full")))
    assert list(full) == ["resources", "batch", "retry"]
    assert full["batch"] == {"queue": "azllm-p4d", "efa": GPU_TYPES["a100"].efa_devices}
    assert "disk" not in full["resources"]  # Batch takes disk from the launch template
    sft = dict(step_decorators(p.for_step("sft_lora")))
    assert sft["batch"] == {"queue": "azllm-g5"} and sft["resources"]["gpu"] == 1


@pytest.mark.parametrize("profile", REQUIRED_PROFILES + ("local-2nodes",))
def test_every_step_carries_exactly_the_expected_decorators(profile):
    """On Metaflow's decorator objects, after the mutator ran."""
    steps, parallel = flow_steps_and_parallel()
    prof = load_compute_profile(profile)
    assert parallel == {"cpt_embeddings", "cpt_full"}
    assert all(prof.for_step(s).nodes == 1 for s in steps if s not in parallel), "multi-node step not @parallel"
    actual = compute_decorators(mutated_flow_class(profile))
    plan = compute_plan(prof, steps, parallel)
    for step in steps:
        expected = {name for name, _ in plan[step]} | ({"parallel"} if step in parallel else set())
        assert set(actual[step]) == expected, (step, actual[step])
        assert not {"kubernetes", "batch"} <= set(actual[step]), f"{step} has both backends"
        for name, kwargs in plan[step]:
            for key, value in kwargs.items():
                assert actual[step][name][key] == value, (step, name, key)


def test_profile_secrets_become_a_secrets_decorator(tmp_path):
    path = tmp_path / "with-secrets.toml"
    path.write_text('[default]\nbackend = "kubernetes"\nsecrets = ["azllm/hf-token"]\n')
    assert dict(step_decorators(load_compute_profile(str(path)).for_step("start")))["secrets"] == {
        "sources": ["azllm/hf-token"]}
    decos = compute_decorators(mutated_flow_class(str(path)))
    assert all(d["secrets"]["sources"] == ["azllm/hf-token"] for d in decos.values())


def test_num_nodes_feeds_num_parallel():
    assert num_nodes(ComputeConfig(profile="case-study"), "cpt_full") == 2
    assert num_nodes(ComputeConfig(profile="kubernetes-h100"), "cpt_full") == 1
    assert num_nodes(ComputeConfig(profile="local"), "cpt_embeddings") == 1


# ---------------------------------------------------------------------------
# Errors name the step and the field
# ---------------------------------------------------------------------------


def _profile(tmp_path: Path, text: str) -> ComputeProfile:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_compute_profile(str(path))


def test_unknown_gpu_type_names_step_and_field(tmp_path):
    with pytest.raises(ConfigError, match=r"step 'cpt_full'.*gpu_type='v100' is not a known GPU type; "
                                          r"accepted: \['a100', 'a10g', 'h100'\]"):
        _profile(tmp_path, '[default]\nbackend = "kubernetes"\n[steps.cpt_full]\ngpu_type = "v100"\n'
                           "gpus_per_node = 8\n")


def test_gpu_count_the_instance_lacks_names_step_and_field(tmp_path):
    with pytest.raises(ConfigError, match=r"step 'sft_lora'.*gpus_per_node=4 but a a10g node \(g5.8xlarge\) "
                                          r"has 1 GPU"):
        _profile(tmp_path, '[default]\nbackend = "kubernetes"\n[steps.sft_lora]\ngpu_type = "a10g"\n'
                           "gpus_per_node = 4\n")
    with pytest.raises(ConfigError, match=r"step 'cpt_full'.*gpus_per_node=0"):
        _profile(tmp_path, '[steps.cpt_full]\nbackend = "kubernetes"\ngpu_type = "h100"\n')


def test_missing_queue_names_the_flow_step_even_from_default(tmp_path):
    profile = _profile(tmp_path, '[default]\nbackend = "batch"\n[steps.cpt_full]\nqueue = "azllm-p4d"\n')
    assert profile.for_step("cpt_full").queue == "azllm-p4d"
    with pytest.raises(ConfigError, match=r"step 'start' \(from \[default\]\): queue is empty but "
                                          r"backend='batch' needs an AWS Batch job queue"):
        compute_plan(profile, ["start", "cpt_full"], set())


def test_other_profile_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"\[steps.cpt_full\] unknown key\(s\) \['gpus'\]"):
        _profile(tmp_path, "[steps.cpt_full]\ngpus = 8\n")
    with pytest.raises(ConfigError, match=r"step 'sft_lora': nodes=2 but only \['cpt_embeddings', 'cpt_full'\]"):
        _profile(tmp_path, "[steps.sft_lora]\nnodes = 2\n")
    with pytest.raises(ConfigError, match=r"step 'start'.*backend='local' takes no queue"):
        _profile(tmp_path, '[steps.start]\nqueue = "q"\n')
    with pytest.raises(ConfigError, match=r"\[steps.cpt\] but the flow has no such step"):
        compute_plan(_profile(tmp_path, "[steps.cpt]\ncpu = 4\n"), ["start", "cpt_full"], set())
    with pytest.raises(ConfigError, match=r"step .cpt_embeddings.: nodes=2 but the step is not @parallel"):
        compute_plan(load_compute_profile("local-2nodes"), ["start", "cpt_embeddings", "cpt_full"], set())
    with pytest.raises(ConfigError, match=r"compute profile 'nope'.*known profiles: \[.*'local'"):
        load_compute_profile("nope")
    with pytest.raises(ConfigError, match=r"step 'cpt_full'.*cpu=200 but p4d.24xlarge has 96 vCPUs"):
        _profile(tmp_path, '[steps.cpt_full]\nbackend = "kubernetes"\ngpu_type = "a100"\ngpus_per_node = 8\n'
                           "cpu = 200\n")


def test_flow_refuses_a_bad_profile_before_any_step(tmp_path):
    """Through the real CLI: a one-line error naming the step and the field, no traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[default]\nbackend = "kubernetes"\n[steps.evaluate]\ngpu_type = "a100"\ngpus_per_node = 16\n')
    text = f'inherit = "{TINY_PRESET}"\n[compute]\nprofile = "{bad}"\n'
    proc = run_flow("--config-value", "config", text, "show", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(r"invalid compute profile: .*step 'evaluate'.*gpus_per_node=16 but a a100 node "
                     r"\(p4d.24xlarge\) has 8 GPU", out), out[-2000:]
    assert "Traceback" not in out


# ---------------------------------------------------------------------------
# Prices and the docs' cost table
# ---------------------------------------------------------------------------


def test_prices_cover_every_instance_and_cost_table():
    prices = load_prices()
    assert {g.instance_type for g in GPU_TYPES.values()} <= set(prices["instances"])
    cost = hourly_cost(load_compute_profile("case-study"), ["train_tokenizer", "cpt_full", "sft_lora"])
    assert cost["cpt_full"] == pytest.approx(2 * prices["instances"]["p4d.24xlarge"])
    assert cost["sft_lora"] == pytest.approx(prices["instances"]["g5.8xlarge"])
    assert cost["train_tokenizer"] == pytest.approx(32 * prices["cpu"]["usd_per_vcpu_hour"])
    assert set(hourly_cost(load_compute_profile("local"), ["cpt_full"]).values()) == {0.0}


def test_docs_cost_table_matches_prices(repo_root):
    """docs/cloud.md quotes the CPT price per hour of every profile; keep it in step with prices.toml."""
    doc = (repo_root / "docs" / "cloud.md").read_text(encoding="utf-8")
    for name in REQUIRED_PROFILES:
        cpt = hourly_cost(load_compute_profile(name), ["cpt_full"])["cpt_full"]
        assert re.search(rf"\| `{re.escape(name)}` \|.*\| \${cpt:,.2f} \|", doc), f"{name}: ${cpt:,.2f} not in docs"


# ---------------------------------------------------------------------------
# torchrun layout of a @parallel node
# ---------------------------------------------------------------------------


def test_layout_outside_parallel_is_one_node(monkeypatch):
    for var in ("MF_PARALLEL_NUM_NODES", "MF_PARALLEL_NODE_INDEX", "MF_PARALLEL_MAIN_IP"):
        monkeypatch.delenv(var, raising=False)
    layout = torchrun_layout(ComputeConfig(profile="local", nproc_per_node=2), "cpt_full")
    assert layout == TorchrunLayout(nproc_per_node=2)


def test_layout_of_each_node_in_a_local_gang(monkeypatch):
    monkeypatch.setenv("MF_PARALLEL_NUM_NODES", "2")
    monkeypatch.setenv("MF_PARALLEL_MAIN_IP", "127.0.0.1")
    monkeypatch.setenv("MF_PARALLEL_CONTROL_TASK_ID", "7")
    layouts = []
    for rank in (0, 1):
        monkeypatch.setenv("MF_PARALLEL_NODE_INDEX", str(rank))
        layouts.append(torchrun_layout(ComputeConfig(profile="local-2nodes", nproc_per_node=1), "cpt_full"))
    assert [lay.node_rank for lay in layouts] == [0, 1] and layouts[0].is_main_node
    assert {lay.nnodes for lay in layouts} == {2} and {lay.nproc_per_node for lay in layouts} == {1}
    assert layouts[0].master_port == layouts[1].master_port  # same rendezvous on every node
    assert rendezvous_port("10.0.0.5", "x") == 29500  # across hosts: torchrun's default
    with pytest.raises(RuntimeError, match=r"runs on 2 nodes but the compute profile 'local' says nodes=1"):
        torchrun_layout(ComputeConfig(profile="local"), "cpt_full")
