"""The Python packages raysweep needs that the lent GPU machine's image lacks, packed for
`benchmarks/gpu_check.sh` to unpack there (it has no network).

    make gpu-wheels     # = .venv/bin/python -m benchmarks.gpu_wheels → .gpu-wheels/site.tar.xz

The GPU machine's image (Python 3.12, x86-64, torch 2.11 + CUDA 13, torchvision, timm,
pandas, pyarrow, scipy, matplotlib, pytest, tensorboard …: `IMAGE` below, as the device
tool's KINDS.md lists it) has no Ray, tensorboardX or Optuna. This walks raysweep's
requirements (pyproject's, the `test` extra and Ray's `default,tune,train` extras) through
the distributions installed here, keeps those the image does not hold, and downloads each
at the version installed here as a cp312 manylinux wheel (pure-Python ones as they are),
without dependencies: the walk already named them. The wheels are installed here into a
folder for that interpreter (`pip install --target`, no compilation), and packed as one
xz tarball that the GPU machine unpacks onto its PYTHONPATH: Ray's wheel alone is 79 MB,
over the 64 MiB that travels with the working tree, but without its Java jar (31 MB,
for Java workers) and the dashboard's source maps, and xz-compressed (-3), everything is
52 MB. A torch CUDA wheel (GBs) could not travel, which is why the image's torch
(2.11 there) is used as it is.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

# The GPU machines' image ('cuda'), as read on 2026-11-17 (KINDS.md: "Python packages
# already there"). Names normalised (lower case, '-').
IMAGE = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp
""".split())
ROOTS = ["ray[default,tune,train]", "tensorboardX", "optuna", "pyyaml", "filelock", "jinja2",
         "pyarrow", "rich", "psutil", "scipy", "matplotlib", "pandas", "timm", "pytest",
         "tensorboard"]
# The machine's interpreter: Python 3.12 on x86-64 Linux (KINDS.md).
TARGET = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
          "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_on_image(roots: list[str] = ROOTS) -> dict[str, str]:
    """{name: version installed here} of every distribution raysweep needs there that
    the image lacks, found by walking requirements from `roots` (a requirement the
    image holds is not followed: the image's own copy brings its own needs)."""
    need: dict[str, str] = {}
    todo = [Requirement(r) for r in roots]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        req = todo.pop()
        name = normal(req.name)
        if (name, frozenset(req.extras)) in seen or name in IMAGE and name != "ray":
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            sys.exit(f"gpu_wheels: {req.name} is not installed here: run `make env` first")
        need[name] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            extras = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({**TARGET, "extra": e})
                                         for e in extras):
                todo.append(sub)
    return dict(sorted(need.items()))


# Not needed to run studies there: Java workers, the dashboard's source maps, scripts.
DROP = ("ray/jars", "bin")
DROP_SUFFIXES = (".js.map",)


def pip_for_target(verb: str, *args: str) -> None:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", verb, "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, *args],
                   check=True)


def pack(need: dict[str, str], wheels: Path, site: Path, out: Path) -> None:
    """Download the wheels into `wheels`, install them into `site`, pack `site` as `out`."""
    wheels.mkdir(parents=True, exist_ok=True)
    pip_for_target("download", "-d", str(wheels), *(f"{n}=={v}" for n, v in need.items()))
    shutil.rmtree(site, ignore_errors=True)
    pip_for_target("install", "--no-compile", "--no-index", "--target", str(site),
                   *(str(w) for w in sorted(wheels.glob("*.whl"))
                     if normal(w.name.split("-")[0]) in need))
    for part in DROP:
        shutil.rmtree(site / part, ignore_errors=True)
    for path in list(site.rglob("*")):
        if path.is_file() and path.name.endswith(DROP_SUFFIXES) or path.name == "__pycache__":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    # xz -3 on all cores: minutes, not the quarter of an hour tarfile's preset 6 took on a
    # loaded machine; written beside `out` and renamed, so an interrupted run leaves no
    # truncated tarball for the GPU machine to fail on.
    partial = out.with_name(out.name + ".partial")
    with open(partial, "wb") as f:
        tar = subprocess.Popen(["tar", "-C", str(site), "-cf", "-", "."], stdout=subprocess.PIPE)
        subprocess.run(["xz", "-T0", "-3"], stdin=tar.stdout, stdout=f, check=True)
        if tar.wait() != 0:
            sys.exit("gpu_wheels: tar failed")
    partial.replace(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(".gpu-wheels/site.tar.xz"))
    ap.add_argument("--work", type=Path, default=Path("build/gpu-wheels"),
                    help="where the wheels are downloaded and installed before packing")
    ap.add_argument("--list", action="store_true", help="print what would be fetched; fetch nothing")
    args = ap.parse_args()
    need = missing_on_image()
    for name, version in need.items():
        print(f"{name}=={version}")
    if args.list:
        return
    pack(need, args.work / "wheels", args.work / "site", args.out)
    size = args.out.stat().st_size / 2**20
    print(f"gpu_wheels: {len(need)} packages, {size:.1f} MiB in {args.out} (the device tool "
          f"carries at most 64 MiB with the working tree)")


if __name__ == "__main__":
    main()
