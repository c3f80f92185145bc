# Set up devlearn on the lent GPU machine, which has Python 3.12 and PyTorch but no network.
#
# Source it from the repo root, in the same command as the benchmark (each device call starts bare),
# with .whl named in the call's carry:
#
#   source bench/gpu_setup.sh && python3 bench/train_throughput.py --device cuda
#
# It
#   1. installs the wheels in .whl/ (devlearn's dependencies that the machine's image lacks) into
#      $DEVLEARN_SITE (default /tmp/site), without deps, from .whl/ only;
#   2. installs devlearn itself from this working tree into the same folder (not editable: envs/ and
#      agents/ only import as devlearn.envs and devlearn.agents through pyproject's package-dir mapping);
#   3. exports PYTHONPATH and PATH (the `devlearn` console script), checks that every requirement of
#      devlearn and of the carried wheels is met, and prints whether torch sees CUDA.
# Afterwards use the `devlearn` command or `python3 bench/...`: `python3 -m devlearn` run in the repo
# root would import the bare devlearn/ folder instead of the installed package.
# Executed instead of sourced (bash bench/gpu_setup.sh), it installs and checks, then prints the two
# exports to use. DEVLEARN_WHEELS overrides the wheels folder (default: .whl/ at the repo root).
#
# The wheels (about 14 MiB; py3.12, x86_64), fetched on a machine with network, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       gymnasium==1.4.0 farama-notifications==0.0.6 minigrid==3.2.0 pygame-ce==2.5.8 pettingzoo==1.27.0 \
#       stable-baselines3==2.9.2 sb3-contrib==2.9.2 hydra-core==1.3.8 omegaconf==2.3.1
#   python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # sdist only on PyPI: pure Python
# Everything else devlearn needs (torch, numpy, tensorboard, pillow, cloudpickle, typing-extensions,
# packaging, pyyaml) is in the machine's image.

_devlearn_gpu_setup() {
    local repo site wheels
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || return 1
    site=${DEVLEARN_SITE:-/tmp/site}
    wheels=${DEVLEARN_WHEELS:-$repo/.whl}
    if ! compgen -G "$wheels/*.whl" >/dev/null; then
        echo "gpu_setup: no wheels in $wheels (name .whl in the device call's carry)" >&2
        return 1
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl || return 1
    # The working tree is copied so the build leaves no build/ or *.egg-info in the repo.
    local src
    src=$(mktemp -d) || return 1
    (cd "$repo" && tar --exclude=./.whl --exclude=./.git --exclude=./build --exclude='*.egg-info' \
        --exclude=./runs --exclude=./outputs -cf - .) | tar -xf - -C "$src" || return 1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
        --upgrade --target "$site" "$src" || { rm -rf "$src"; return 1; }
    rm -rf "$src"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$site/bin:$PATH"
    python3 - "$wheels" <<'EOF' || return 1
"""Check that devlearn's requirements, and those of every carried wheel, are installed at allowed versions."""
import importlib.metadata as md
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

carried = {canonicalize_name(w.name.split("-")[0]) for w in Path(sys.argv[1]).glob("*.whl")}
problems = []
for owner in ["devlearn", *sorted(carried)]:
    for spec in md.requires(owner) or []:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            problems.append(f"{owner} needs {req}: not installed")
            continue
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{owner} needs {req}: {version} is installed")
for problem in problems:
    print(f"gpu_setup: {problem}", file=sys.stderr)
print(f"gpu_setup: devlearn {md.version('devlearn')} and {len(carried)} carried packages installed", end="")
print(f" ({len(problems)} unmet requirements)" if problems else "; every requirement met")
sys.exit(1 if problems else 0)
EOF
    # from / : in the repo root, `python3 -c` and `python3 -m` import the bare devlearn/ folder, which
    # lacks devlearn.envs and devlearn.agents (the `devlearn` command and scripts under bench/ are fine)
    (cd / && python3 -c "import devlearn, devlearn.envs, devlearn.agents, torch; print(torch.cuda.is_available())") ||
        return 1
    command -v devlearn >/dev/null || { echo "gpu_setup: no devlearn script in $site/bin" >&2; return 1; }
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    _devlearn_gpu_setup || exit 1
    echo "gpu_setup: installed; to use it in this shell (or source this script instead):"
    echo "  export PYTHONPATH=$PYTHONPATH PATH=${DEVLEARN_SITE:-/tmp/site}/bin:\$PATH"
else
    _devlearn_gpu_setup
fi
