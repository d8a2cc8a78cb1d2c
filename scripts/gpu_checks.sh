#!/bin/bash
# GPU checks of issue 16, prepared here and run on a lent device machine in one call (the device
# tool's `run`, which has no network: wheels and data travel in the ignored folders .whl and .gpu).
#
#   bash scripts/gpu_checks.sh prepare      # here: wheels for Python 3.12, ethanol and Si data, MACE's env
#   run(command="bash scripts/gpu_checks.sh run", carry=[".gpu", ".whl"], timeout_s=600)   # there
#
# `run` writes to $OUT: gpu.txt (device, versions), tests.log (tests/test_cuda.py and the CUDA export
# test, 4 processes), bench.md / bench.log / results.json (scripts/bench_peers.py: mlip and MACE
# side by side on the GPU, rMD17 ethanol, 60 s each) and profile.log (scripts/profile_model.py: the
# training step eager and compiled on the GPU). About 10 minutes with the machine's start.
set -u
R=$(cd "$(dirname "$0")/.." && pwd)
cd "$R"

prepare() {
    local data=${MLIP_SHARED_DATA:-$R/../shared/data}
    local p="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
             --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
    grep -qx "/.whl/" .git/info/exclude || echo "/.whl/" >> .git/info/exclude
    grep -qx "/.gpu/" .git/info/exclude || echo "/.gpu/" >> .git/info/exclude
    mkdir -p .whl/mlip .whl/mace .gpu/data/rmd17_ethanol .gpu/data/mlearn .gpu/peers/mace/bin
    # mlip's own requirements that the device image lacks (it has torch, lightning, torchmetrics, ...)
    python3 -m pip download -q --no-deps $p -d .whl/mlip hydra-core==1.3.2 omegaconf==2.3.0 ase==3.29.0 \
        vesin==0.6.2 lmdb==1.7.5 e3nn==0.6.0
    python3 -m pip wheel -q --no-deps -w .whl/mlip antlr4-python3-runtime==4.9.3  # sdist only
    # MACE 0.3.16 and what it needs beyond the image (e3nn 0.4.4 goes to its own folder there)
    python3 -m pip download -q --no-deps $p -d .whl/mace mace-torch==0.3.16 e3nn==0.4.4 matscipy==1.3.1 \
        torch-ema==0.3 prettytable==3.19.0 configargparse==1.9.0 GitPython gitdb smmap orjson wcwidth
    python3 -m pip wheel -q --no-deps -w .whl/mace python-hostlist==2.3.0  # sdist only
    cp "$data"/rmd17_ethanol/{train.xyz,test_MD.xyz,isolated_atoms.xyz,LICENSE,README.md} .gpu/data/rmd17_ethanol/
    cp "$data"/mlearn/{Si_training.extxyz,Si_test.extxyz,LICENSE} .gpu/data/mlearn/
    # bench_peers' MACE environment there: the image's python3 with the carried MACE first
    cat > .gpu/peers/mace/bin/python <<'WRAP'
#!/bin/bash
export PYTHONPATH=/tmp/mace_site${PYTHONPATH:+:$PYTHONPATH}
exec python3 "$@"
WRAP
    chmod +x .gpu/peers/mace/bin/python
    echo '{"peer": "mace", "requirement": "mace-torch==0.3.16", "versions": {"mace-torch": "0.3.16", "e3nn": "0.4.4"},
 "created_s": 0, "created": "carried wheels"}' > .gpu/peers/mace/bench-env.json
    du -sh .whl .gpu
}

run() {
    local t0
    t0=$(date +%s)
    el() { echo "[+$(( $(date +%s) - t0 ))s] $*"; }
    export PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade .whl/mlip/*.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/mace_site .whl/mace/*.whl
    python3 -c "import torch, e3nn, lightning; print('torch', torch.__version__, 'e3nn', e3nn.__version__,
                'lightning', lightning.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
    export PYTHONPATH=$R MLIP_SHARED_DATA=$R/.gpu/data
    el tests
    timeout 200 python3 -m pytest -q -n 4 -p no:cacheprovider tests/test_cuda.py \
        tests/test_export_engines.py::test_calculator_on_cuda_equals_cpu > "$OUT/tests.log" 2>&1
    echo "rc $?" >> "$OUT/tests.log"
    tail -4 "$OUT/tests.log"
    el bench
    timeout 280 python3 scripts/bench_peers.py --data-root "$R/.gpu/data" --cache "$R/.gpu/peers" --budget 60 \
        --threads 8 --mlip-model equivariant --datasets ethanol --models mlip,mace --seed 0 --workdir /tmp/gpub \
        --output "$OUT/bench.md" --mlip-overrides "model.size=medium trainer.accelerator=gpu trainer.devices=1" \
        --mace-args "--device cuda" > "$OUT/bench.log" 2>&1
    echo "rc $?" >> "$OUT/bench.log"
    tail -12 "$OUT/bench.log"
    cp /tmp/gpub/results.json "$OUT/" 2>/dev/null
    el profile
    for c in "" "--compile"; do
        timeout 150 python3 scripts/profile_model.py --device cuda --calls 30 $c model=equivariant \
            model.size=medium data=rmd17_ethanol 2>&1 | grep -v Warn | tail -3
    done | tee "$OUT/profile.log"
    el done
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash scripts/gpu_checks.sh prepare|run" >&2; exit 2 ;;
esac
