"""Cheap guards on the shipped cluster launcher files (no Ray started, no cloud call):
what `ray up` would run on a node is valid bash, every node type boots a named image, Ray's
own validation accepts the file, and the versions the nodes install are the ones here.
`make cluster-check` (cluster/check.py) launches cluster.yaml for real on loopback."""
from __future__ import annotations

import copy
import importlib.metadata as metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "cluster"))
import check  # noqa: E402  (cluster/check.py: the doc's steps and the loopback config)
import pin  # noqa: E402

CLUSTER_FILES = sorted(ROOT.glob("cluster*.yaml"))
COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")


def _commands(config: dict) -> list[tuple[str, str]]:
    out = [(key, cmd) for key in COMMAND_KEYS for cmd in config.get(key) or []]
    for name, kind in (config.get("available_node_types") or {}).items():
        for key in ("initialization_commands", "worker_setup_commands", "setup_commands"):
            out += [(f"{name}.{key}", cmd) for cmd in kind.get(key) or []]
    return out


def bash_errors(config: dict) -> list[str]:
    """`bash -n` of every command string as YAML loaded it: (key, error) of each failing."""
    errors = []
    for key, cmd in _commands(config):
        proc = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
        if proc.returncode:
            errors.append(f"{key}: {cmd!r}: {proc.stderr.strip()}")
    return errors


def images_missing(config: dict) -> list[str]:
    """Node types that boot whatever image the launcher picks (AWS ImageId, GCP sourceImage)."""
    missing = []
    for name, kind in config["available_node_types"].items():
        node = kind.get("node_config") or {}
        disks = node.get("disks") or [{}]
        if not (node.get("ImageId") or disks[0].get("initializeParams", {}).get("sourceImage")):
            missing.append(name)
    return missing


def pinned_ray(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("ray=="):
            return line.removeprefix("ray==").strip()
    return None


def test_there_is_a_cluster_file():
    assert ROOT / "cluster.yaml" in CLUSTER_FILES


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_every_command_is_valid_bash(path):
    assert bash_errors(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_every_node_type_names_an_image(path):
    assert images_missing(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_rays_validation_accepts_the_file(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_nodes_install_the_pinned_versions(path):
    """The setup installs with cluster/constraints.txt, which a file mount carries."""
    config = yaml.safe_load(path.read_text())
    pip = [c for c in config["setup_commands"] if "pip install" in c]
    assert pip and all("-c ~/raysweep/cluster/constraints.txt" in c for c in pip)
    assert config["file_mounts"]["~/raysweep"] == "."


def test_the_pinned_ray_is_the_installed_one():
    text = (ROOT / "cluster" / "constraints.txt").read_text()
    assert pinned_ray(text) == metadata.version("ray"), "stale pins: python cluster/pin.py"
    assert f"raysweep=={metadata.version('raysweep')}" in text.splitlines()
    assert {line.split("==")[0] for line in text.splitlines() if "==" in line} == set(
        pin.pinned_names())


def test_the_guards_fail_on_the_first_cluster_file():
    """cluster.yaml as first shipped: its third setup command was cut by a ` #` (YAML read
    a comment), no node type named an image, and nothing pinned Ray."""
    first = yaml.safe_load(FIRST_SHIPPED)
    assert [e.split(":")[0] for e in bash_errors(first)] == ["setup_commands"]
    assert images_missing(first) == ["head", "gpu_1x", "gpu_8x"]
    assert not any("constraints" in c for c in first["setup_commands"])


def test_the_pass_role_policy_names_the_workers_role():
    policy = json.loads((ROOT / "cluster" / "aws-passrole.json").read_text())
    [statement] = policy["Statement"]
    assert statement["Action"] == "iam:PassRole"
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    roles = {k["node_config"]["IamInstanceProfile"]["Name"]
             for k in config["available_node_types"].values()
             if "IamInstanceProfile" in k["node_config"]}
    assert roles == {statement["Resource"].rsplit("/", 1)[1]}


# --- the loopback check walks the doc ---

def test_the_doc_gives_the_checks_steps_in_its_order():
    steps = check.doc_steps()
    assert [s for s, _ in steps] == list(check.STEPS)
    commands = dict(steps)
    assert commands["up"] == ["ray up -y cluster.yaml"]
    assert commands["dashboard"][0] == "ray dashboard cluster.yaml"
    assert commands["run"] == ["ray exec cluster.yaml 'raysweep run ablations --storage "
                               "s3://BUCKET/runs'"]
    assert commands["down"] == ["ray down -y cluster.yaml"]


def test_every_doc_command_is_substituted_as_printed():
    """Each substitution the check prints changes some command of the doc (none is stale)."""
    table = check.substitutions(Path("/w/cluster.yaml"), "/n/runs", 1, 2)
    lines = [line for _, cmds in check.doc_steps() for line in cmds]
    for doc, here, _ in table:
        partial = [check.substitute(line, table[:table.index((doc, here, _))]) for line in lines]
        assert any(doc in line for line in partial), doc


def test_the_checks_short_study_is_one_raysweep_accepts(capsys):
    """What step "run" runs instead of the doc's study passes the checks `run` makes
    before Ray starts (a `--set epochs=1` below smoke's ASHA grace period was refused
    on the node, and only `make cluster-check` saw it)."""
    from raysweep import cli

    sets = [a for s in check.TINY_SETS for a in ("--set", s)]
    assert cli.main(["show", check.STUDY, "--no-estimate", *sets]) == 0, capsys.readouterr()


def test_the_derived_config_keeps_the_shipped_commands():
    shipped = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    derived = check.derive(shipped, key=Path("/k"), proxy="p %h", gcs_port=1,
                           dashboard_port=2, temp_dir="/t")
    assert derived["setup_commands"] == shipped["setup_commands"]
    assert derived["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    head = derived["head_start_ray_commands"]
    assert "ray stop" not in head and len(head) == len(shipped["head_start_ray_commands"])
    start = [c for c in shipped["head_start_ray_commands"] if "ray start" in c]
    assert [c for c in head if "ray start" in c][0].startswith(start[0])
    assert "--node-ip-address=127.0.0.1" in head[-1]
    assert bash_errors(derived) == []
    from ray.autoscaler._private.util import prepare_config, validate_config
    validate_config(prepare_config(copy.deepcopy(derived)))


def test_an_on_premise_cluster_has_no_node_type_to_grow():
    """Ray's local provider makes one type for the head and its fixed workers, so raysweep
    plans such a cluster from its nodes (`raysweep.engine.cluster.find_autoscaler` gives None)."""
    from ray.autoscaler._private.util import prepare_config
    from raysweep.engine.cluster import autoscaler_from_config

    shipped = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    derived = check.derive(shipped, key=Path("/k"), proxy="p %h", gcs_port=1,
                           dashboard_port=2, temp_dir="/t")
    assert autoscaler_from_config(prepare_config(derived)).node_types == ()
    assert {t.name for t in autoscaler_from_config(prepare_config(shipped)).node_types} == {
        "gpu_1x", "gpu_8x"}


FIRST_SHIPPED = r"""
cluster_name: raysweep
max_workers: 5
upscaling_speed: 1.0
idle_timeout_minutes: 10
provider:
  type: aws
  region: us-west-2
  availability_zone: us-west-2a,us-west-2b
  cache_stopped_nodes: false
auth:
  ssh_user: ubuntu
available_node_types:
  head:
    resources: {CPU: 0}
    node_config:
      InstanceType: m5.2xlarge
      BlockDeviceMappings:
        - DeviceName: /dev/sda1
          Ebs: {VolumeSize: 200}
  gpu_1x:
    min_workers: 1
    max_workers: 4
    resources: {CPU: 4, GPU: 1}
    node_config:
      InstanceType: g5.xlarge
      IamInstanceProfile: {Name: ray-autoscaler-v1}
  gpu_8x:
    min_workers: 0
    max_workers: 1
    resources: {CPU: 96, GPU: 8}
    node_config:
      InstanceType: p4d.24xlarge
      IamInstanceProfile: {Name: ray-autoscaler-v1}
head_node_type: head
file_mounts:
  ~/raysweep: .
  ~/.ray/auth_token: ~/.ray/auth_token
rsync_exclude: [".venv", "runs", "data", "**/__pycache__", ".git"]
setup_commands:
  - python3 -m venv ~/venv
  - ~/venv/bin/pip install -q -e ~/raysweep    # the same Ray version as your machine's
  - grep -q 'raysweep env' ~/.bashrc || echo 'export PATH=$HOME/venv/bin:$PATH RAY_AUTH_MODE=token  # raysweep env' >> ~/.bashrc
cluster_synced_files: []
initialization_commands: []
head_setup_commands: []
worker_setup_commands: []
head_start_ray_commands:
  - ray stop
  - ulimit -n 65536; ray start --head --port=6379 --num-cpus=0 --object-manager-port=8076
    --autoscaling-config=~/ray_bootstrap_config.yaml --dashboard-host=127.0.0.1 --disable-usage-stats
worker_start_ray_commands:
  - ray stop
  - ulimit -n 65536; ray start --address=$RAY_HEAD_IP:6379 --object-manager-port=8076 --disable-usage-stats
"""
