"""Study files: validation errors name key, value and what is allowed; expansion is exact."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from support.cli import one_error_line, raysweep
from support.studies import write_study
from raysweep import cli
from raysweep.core.precision import GPU_DRIVER_PATHS
from raysweep.study.parse import StudyError, apply_override, load_study


def study(tmp_path, **body):
    return load_study(str(write_study(tmp_path, "s", **body)))


GROUP = {"g": {"baseline": "resnet_20", "variants": {"wide": {"model": "resnet_20",
                                                              "set": {"lr": 0.2}}}}}


@pytest.mark.parametrize("body, message", [
    ({"models": ["resnet_20"], "defaults": {"epochz": 3}},
     "unknown key defaults.epochz (did you mean 'epochs'?)"),
    ({"models": ["resnet_20"], "defaults": {"epochs": -1}}, "defaults.epochs=-1 must be >= 1"),
    ({"models": ["resnet_20"], "defaults": {"epochs": "ten"}},
     "defaults.epochs='ten' must be an integer"),
    ({"models": ["resnet_2O"]}, "unknown model 'resnet_2O'; did you mean "),
    ({"models": ["resnet_20"], "defaults": {"recipe": "sdg"}},
     "defaults.recipe='sdg' must be one of sgd, sgd_ghostnet"),
    ({"models": ["resnet_20"], "defaults": {"epochs": 2}, "asha": {"grace_period": 5}},
     "asha.grace_period=5 is beyond the epoch budget"),
    ({"models": ["resnet_20"], "seeds": 0}, "seeds=0 must be >= 1"),
    ({"models": ["resnet_20"], "colour": "red"}, "unknown key 'colour'"),
    ({"models": [{"model": "resnet_20", "options": {"width": 2}}]},
     "model 'resnet_20' takes no option 'width'; accepted options: none"),
    ({"models": ["resnet_20"], "defaults": {"dataset": "imagenet"}},
     "defaults.dataset='imagenet' must be one of cifar100, cifar10, fashion_mnist, imagefolder"),
    ({"models": ["resnet_20"], "resources": {"workers_per_trial": 0}},
     "resources.workers_per_trial=0 must be >= 1"),
    ({"models": ["resnet_20"], "search": {"params": {"lr": {"loguniform": [0, 1]}}}},
     "search.params.lr.loguniform=[0, 1] must be [lo, hi] with lo < hi and lo > 0"),
    ({"models": ["resnet_20"], "search": {"by_recipe": {"adam": {}}}},
     "unknown recipe search.by_recipe.adam; allowed: sgd"),
    ({"models": ["resnet_20"], "asha": {"by": "seed"}}, "asha.by='seed' must be one of trial, arm"),
    ({"models": ["resnet_20"], "asha": {"by": "arm"},
      "search": {"params": {"lr": {"loguniform": [0.01, 0.1]}}}},
     "asha.by=arm judges the seeds of one config together"),
    ({"groups": GROUP, "seeds": {"min": 4, "max": 3}}, "seeds.max=3 is below seeds.min=4"),
    ({"groups": GROUP, "seeds": {"min": 3}},
     "seeds: {min, max, detect} tests a variant on every seed it runs, but asha.by=trial"),
    ({"groups": GROUP, "seeds": {"min": 3}, "asha": {"enabled": False},
      "grid": {"lr": [0.1, 0.2]}}, "gives each arm several"),
    ({"groups": GROUP, "seeds": {"min": 1}}, "seeds.min=1 must be >= 2"),
    ({"groups": GROUP, "seeds": {"mni": 3}}, "unknown key seeds.mni (did you mean 'min'?)"),
    ({"groups": GROUP, "seeds": {"detect": 0}}, "seeds.detect=0 must be > 0"),
    ({"models": ["resnet_20"], "seeds": {"min": 3}},
     "seeds: {min, max, detect} adds seeds to the variants of ablation groups"),
    ({"groups": GROUP, "seeds": {"min": 3}, "defaults": {"val_fraction": 0},
      "asha": {"enabled": False}}, "seeds: {min, max, detect} decides on validation top-1"),
])
def test_bad_study_is_one_clear_error(tmp_path, body, message):
    with pytest.raises(StudyError) as err:
        study(tmp_path, **body)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_adaptive_seeds_expand_to_the_first_look_and_the_seeds_the_records_ask_for(tmp_path):
    s = study(tmp_path, groups=GROUP, seeds={"min": 2, "max": 5, "detect": 1.5},
              asha={"by": "arm"})
    assert (s.seed_plan.min, s.seed_plan.max, s.seed_plan.detect) == (2, 5, 1.5)
    assert s.seed_plan.looks == [2, 3, 5] and s.count() == 2 * 5
    assert len(s.most_trials()) == 2 * 5
    # A model outside the groups has no verdict to decide: it keeps the first look's seeds.
    assert len(study(tmp_path, groups=GROUP, models=["resnet_32"], seeds={"min": 2, "max": 5},
                     asha={"enabled": False}).most_trials()) == 2 * 5 + 2
    first = s.trials()
    assert sorted(t.seed for t in first) == [0, 0, 1, 1]
    variant = next(t for t in first if not t.labels[0].baseline)
    s.seeds_wanted = {variant.arm_key: 5}
    more = s.trials()
    assert sorted(t.seed for t in more if t.arm_key == variant.arm_key) == [0, 1, 2, 3, 4]
    # An added seed is the trial a fixed 5-seed study holds: the same key.
    fixed = {t.key for t in study(tmp_path, groups=GROUP, seeds=5, asha={"by": "arm"}).trials()}
    assert {t.key for t in more} <= fixed


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models: [resnet_20\ndefaults: {epochs: 3}\n")
    with pytest.raises(StudyError, match=r"bad.yaml: line \d+ is not valid YAML"):
        load_study(str(path))


@pytest.mark.parametrize("section, key, word", [
    ("resources", "fuse", "off"), ("resources", "fuse", "on"), ("resources", "fuse", "auto"),
    ("defaults", "compile", "off"), ("defaults", "amp", "off")])
def test_on_and_off_are_read_as_written(tmp_path, section, key, word):
    """A bare `compile: off` is the word a user means, not YAML 1.1's boolean, in a study
    file and in a --set value; true / false are still booleans."""
    path = tmp_path / "s.yaml"
    path.write_text(f"models: [resnet_20]\n{section}: {{{key}: {word}}}\n"
                    "asha: {enabled: false}\n")
    study = load_study(str(path))
    assert _value(study, section, key) == word and study.asha.enabled is False
    assert _value(load_study(str(path), [f"{section}.{key}={word}"]), section, key) == word


def _value(study, section: str, key: str):
    values = getattr(study, section)   # resources: a ResourcesConfig; defaults: a mapping
    return values[key] if isinstance(values, dict) else getattr(values, key)


def test_expansion_crosses_arms_grid_and_seeds(tmp_path):
    s = study(tmp_path, models=["resnet_20", "resnet_32"], grid={"lr": [0.1, 0.05]},
              seeds=3, defaults={"epochs": 4})
    trials = s.trials()
    assert len(trials) == 2 * 2 * 3
    assert len({t.key for t in trials}) == 12
    assert {t.train.lr for t in trials} == {0.1, 0.05}
    assert all(t.train.recipe == "sgd" and t.train.momentum == 0.9 for t in trials)


def test_recipes_state_paper_002s_protocol_at_a_global_batch_of_1024(tmp_path):
    [t] = study(tmp_path, models=["resnet_20"], defaults={"weight_decay": 1e-4}).trials()
    assert t.train.weight_decay == 1e-4 and t.train.scheduler == "cosine"
    assert t.train.batch_size == 1024 and t.train.lr == t.train.peak_lr == 0.1
    [t] = study(tmp_path, models=["convnext_tiny"]).trials()
    assert (t.train.optimizer, t.train.peak_lr, t.train.weight_decay) == ("adamw", 4e-3, 0.05)


@pytest.mark.parametrize("scaling, peak", [("none", 0.1), ("linear", 0.0125),
                                           ("sqrt", 0.1 * (128 / 1024) ** 0.5)])
def test_lr_scaling_is_explicit_and_the_lr_used_is_recorded(tmp_path, scaling, peak):
    [t] = study(tmp_path, models=["resnet_20"], defaults={
        "batch_size": 128, "lr_scaling": scaling, "lr_base_batch": 1024}).trials()
    assert t.train.lr == 0.1 and t.train.peak_lr == pytest.approx(peak)


def test_trial_key_covers_the_optimisation_problem_and_nothing_else(tmp_path):
    def key(**defaults):
        return study(tmp_path, models=["resnet_20"], defaults=defaults).trials()[0].key

    base = key()
    assert base.startswith("resnet_20-")
    assert base == key(data_dir="/elsewhere") == key(loader_workers=4) == key(compile="default")
    changed = [key(batch_size=512), key(lr=0.2), key(sync_bn=False), key(val_fraction=0.2),
               key(split_seed=1), key(lr_scaling="linear", lr_base_batch=512), key(epochs=10),
               key(augment="basic"), key(train_size=1000)]
    assert base not in changed and len(set(changed)) == len(changed)


def test_a_baseline_shared_by_groups_is_one_trial_with_every_label(tmp_path):
    s = study(tmp_path, seeds=2, groups={
        "g1": {"baseline": "resnet_20", "variants": {"deep": "resnet_32"}},
        "g2": {"baseline": "resnet_20", "variants": {"deeper": "resnet_56"}}})
    trials = s.trials()
    assert len(trials) == 2 * 3  # resnet_20, resnet_32, resnet_56 × 2 seeds
    shared = [t for t in trials if t.model == "resnet_20"]
    assert [{(x.group, x.variant, x.baseline) for x in t.labels} for t in shared] == \
        [{("g1", "baseline", True), ("g2", "baseline", True)}] * 2


def test_a_study_that_decides_without_a_validation_split_is_refused(tmp_path):
    with pytest.raises(StudyError, match="asha.enabled=true decides on validation top-1, but "
                                         "val_fraction=0 leaves resnet_20 no validation split"):
        study(tmp_path, models=["resnet_20"], defaults={"val_fraction": 0})
    with pytest.raises(StudyError, match="search decides on validation top-1"):
        study(tmp_path, models=["resnet_20"], asha={"enabled": False},
              defaults={"val_fraction": 0}, search={"params": {"lr": {"uniform": [0.1, 0.2]}}})
    # The papers' protocol: no decisions, every training image trains.
    [t] = study(tmp_path, models=["resnet_20"], asha={"enabled": False},
                defaults={"val_fraction": 0}).trials()
    assert t.train.val_fraction == 0
    [t] = study(tmp_path, models=["resnet_20"]).trials()
    assert t.train.val_fraction == 0.1 and t.train.split_seed == 0  # CIFAR-100's default


def test_set_overrides_are_data_never_code():
    raw = {}
    apply_override(raw, "lr=0.05")
    apply_override(raw, "asha.grace_period=2")
    apply_override(raw, "data_dir=__import__('os').system('true')")
    assert raw["defaults"]["lr"] == 0.05 and raw["asha"]["grace_period"] == 2
    assert raw["defaults"]["data_dir"] == "__import__('os').system('true')"
    with pytest.raises(StudyError, match="has no '='"):
        apply_override(raw, "lr")


def test_groups_filter_and_unknown_group(tmp_path):
    body = dict(groups={"g1": {"baseline": "resnet_20", "variants": {"deep": "resnet_32"}},
                        "g2": {"baseline": "resnet_20", "variants": {"deeper": "resnet_56"}}})
    path = write_study(tmp_path, "abl", **body)
    only = load_study(str(path), groups=["g2"]).trials()
    assert {(x.group, x.variant) for t in only for x in t.labels} == {("g2", "baseline"),
                                                                      ("g2", "deeper")}
    with pytest.raises(StudyError, match="unknown group 'g3'.*allowed: g1, g2"):
        load_study(str(path), groups=["g3"])


def test_cli_rejects_a_bad_study_before_ray_starts(tmp_path):
    path = write_study(tmp_path, "bad", models=["resnet_20"], defaults={"epochs": -3})
    proc = raysweep("run", path, "--local", "--storage", tmp_path / "runs", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "raysweep: error: defaults.epochs=-3 must be >= 1"]
    assert not (tmp_path / "runs").exists()  # nothing started, nothing stored


def test_cli_show_lists_the_expanded_trials_and_their_measured_cost(tmp_path):
    # HOME: the step-time cache goes to this test's own folder.
    proc = raysweep("show", "smoke", timeout=300, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "resnet_20" in proc.stdout and "3 trials" in proc.stdout
    assert "estimate for this CPU" in proc.stdout and "measured: resnet_20" in proc.stdout
    assert (tmp_path / ".cache" / "raysweep" / "step_times.json").is_file()


def test_show_lists_the_same_keys_for_every_worker_count_that_divides_the_batch(capsys):
    """The worker count is not part of a trial's identity: 1, 2 or 8 workers train the
    same global batch (`show` prints the keys a run would use; the CLI's own `main`, in
    this process)."""
    def keys(*args):
        assert cli.main(["show", "ablations", "--group", "eca_kernel", "--no-estimate",
                         *args]) == 0
        return [line.split()[0] for line in capsys.readouterr().out.splitlines()
                if line.startswith(("resnet_20-", "ecanet", "eca_resnet_20-"))
                and not line.endswith("(same network)")]

    one = keys()   # 6 arms, of which adaptive and k3 are one network, × 3 seeds
    assert len(one) == 15 and keys("--workers-per-trial", "2") == one == keys(
        "--workers-per-trial", "8")
    assert keys("--set", "sync_bn=false") != one and keys("--set", "batch_size=512") != one
    refused = raysweep("show", "ablations", "--group", "eca_kernel", "--workers-per-trial", "3",
                       "--no-estimate")
    assert one_error_line(refused) == (
        "raysweep: error: defaults.batch_size=1024 is not divisible by workers_per_trial=3: "
        "each worker takes batch_size / workers images per step; allowed: a worker count "
        "that divides 1024")


def test_shipped_studies_load_and_cover_the_zoo():
    from models import list_models
    from raysweep.study.parse import list_spaces

    assert {"smoke", "comparison", "ablations", "hpo"} <= set(list_spaces())
    comparison = load_study("comparison")
    assert {a.model for a in comparison.arms} == set(list_models())
    ablations = load_study("ablations")
    groups = {a.group for a in ablations.arms}
    assert {"eca_kernel", "eca_position", "ghost_ratio", "improved_convnext", "coatnet_opt",
            "training_tricks"} <= groups and any(g.startswith("stem_") for g in groups)
    assert ablations.seeds == [0, 1, 2]
    for g in groups:  # exactly one baseline arm per group
        assert sum(a.baseline for a in ablations.arms if a.group == g) == 1
    assert load_study("hpo").search


def test_cli_show_ablations_lists_groups_and_budget(capsys):
    proc = raysweep("show", "ablations", "--group", "ghost_ratio", "--no-estimate", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ghost_ratio") == 12  # (baseline + 3 ratios) × 3 seeds
    assert "12 trials; epoch budget 3600 trial-epochs" in proc.stdout
    # One resnet_20 trial per seed serves the eca_kernel and ghost_ratio baselines.
    assert cli.main(["show", "ablations", "--group", "ghost_ratio", "--group", "eca_kernel",
                     "--no-estimate"]) == 0
    both = capsys.readouterr().out
    # 30 - 3 (the shared baseline) - 3 (eca_kernel's adaptive = k3, one network)
    assert "24 trials" in both and both.count("(+1 more labels)") == 6


def test_a_study_parses_and_names_its_trials_without_torch_timm_or_ray():
    """Parsing (what `run`, `show` and every refusal do first) reads the zoo's stored
    registry and network fingerprints (models/facts.json), not the zoo: on a machine
    without a GPU driver it imports no torch (~2.5 s of CPU) and never timm, torchvision
    or Ray (~5 s more). (A model with options outside facts.json's standard cases, as in
    the ablations study, is built once to fingerprint it: that imports the zoo.)"""
    code = ("import sys; from raysweep.study.parse import load_study; "
            "keys = [t.key for t in load_study('comparison').trials()]; "
            "print(len(keys), *sorted(m for m in ('torch', 'timm', 'torchvision', 'ray') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    found = proc.stdout.split()
    assert int(found[0]) > 20   # every family of the zoo
    gpu_driver = any(os.path.exists(p) for p in GPU_DRIVER_PATHS)   # then torch asks CUDA
    assert found[1:] == (["torch"] if gpu_driver else [])


def test_show_gives_one_trial_count_at_the_top_and_in_the_summary(capsys):
    """ablations shares its baselines across groups and has twin networks: the head said
    138 trials and the summary 126; both now say what `run` runs, the head why fewer."""
    from raysweep import cli

    assert cli.main(["show", "ablations", "--no-estimate"]) == 0
    out = capsys.readouterr().out.splitlines()
    head = re.match(r"study ablations \(.*\): (\d+) trials \((\d+) arm × seed", out[0])
    summary = re.match(r"(\d+) trials; epoch budget", next(ln for ln in out if "epoch budget" in ln))
    assert head and summary and head[1] == summary[1] and int(head[2]) > int(head[1])


def test_show_says_what_adaptive_seeds_may_add(capsys):
    """The shipped adaptive_seeds study: 3 arms × 3 seeds at the first look, up to 30."""
    from raysweep import cli

    assert cli.main(["show", "adaptive_seeds", "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert "9 trials; epoch budget 18 trial-epochs" in out
    assert "looked at 3, 5, 8, 10 seeds" in out and "at most 30 trials" in out
