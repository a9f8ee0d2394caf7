#!/usr/bin/env bash
# The GPU checks, in one go on a machine with a CUDA GPU (≤ 8 minutes on one H200):
#   1. bench.py on the GPU: MLP and model=cnn epochs (a/b/c) and the speedrun over 3 seeds;
#   2. trainer=ddp over every GPU present, one MLP epoch;
#   3. evaluate on the GPU and on the CPU, same checkpoint, both in fp32: test accuracies equal to 1e-4.
# It appends its blocks to BENCHMARKS.md and leaves every run under $MNIST_LAB_OUTPUT_DIR (outputs/gpu_check).
# Needs mnist_lab's dependencies: `make gpu-wheels` here puts the ones a bare GPU image lacks into .whl/,
# which this script installs first when it finds them. Usage: scripts/gpu_check.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --target /tmp/mnist_lab_site .whl/*.whl
    export PYTHONPATH="/tmp/mnist_lab_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export MNIST_LAB_DATA_DIR=${1:-${MNIST_LAB_DATA_DIR:-data}}
export MNIST_LAB_OUTPUT_DIR=${MNIST_LAB_OUTPUT_DIR:-$PWD/outputs/gpu_check}
$PYTHON -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'; print(torch.cuda.get_device_name())"
$PYTHON -m mnist_lab.datasets data.root="$MNIST_LAB_DATA_DIR"

echo "== 1. epochs and the speedrun on the GPU"
$PYTHON benchmarks/bench.py --models mlp cnn --epochs 3 --accelerator gpu --speedrun-seeds 3 --write BENCHMARKS.md

echo "== 2. DDP over the GPUs present"
$PYTHON -m mnist_lab trainer=ddp trainer.devices=-1 trainer.max_epochs=1 logger=none \
    hydra.run.dir="$MNIST_LAB_OUTPUT_DIR/ddp"
$PYTHON -c "import json; r = json.load(open('$MNIST_LAB_OUTPUT_DIR/ddp/results.json')); print('ddp', r['device'], r['test/acc'])"

echo "== 3. evaluate: the same checkpoint on the GPU and on the CPU, both fp32"
$PYTHON -m mnist_lab experiment=speedrun trainer.accelerator=gpu logger=none hydra.run.dir="$MNIST_LAB_OUTPUT_DIR/speedrun"
ckpt="$MNIST_LAB_OUTPUT_DIR/speedrun/checkpoints/best.ckpt"
for accelerator in gpu cpu; do
    $PYTHON -m mnist_lab.evaluate ckpt_path="$ckpt" accelerator=$accelerator precision=32-true \
        hydra.run.dir="$MNIST_LAB_OUTPUT_DIR/evaluate_$accelerator"
done
$PYTHON - <<EOF
import datetime, json
gpu, cpu = (json.load(open(f"$MNIST_LAB_OUTPUT_DIR/evaluate_{a}/results.json")) for a in ("gpu", "cpu"))
gap = abs(gpu["test/acc"] - cpu["test/acc"])
line = (f"{datetime.date.today()} · scripts/gpu_check.sh · evaluate of one speedrun checkpoint in fp32: "
        f"test/acc {gpu['test/acc']:.4f} on {gpu['device']}, {cpu['test/acc']:.4f} on {cpu['device']} (gap {gap:.1e})")
print(line)
with open("BENCHMARKS.md", "a") as f:
    f.write("\n" + line + "\n")
assert gap <= 1e-4, "GPU and CPU disagree on the same checkpoint"
EOF
echo "gpu_check: all checks passed"
