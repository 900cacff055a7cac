#!/usr/bin/env bash
# Encoder phase 9 on a lent GPU machine: amortised search, as one prepared command.
#
# `musiclm compress --search 100` raises real-music note F1 at 6 kbps 0.455 -> 0.483, at ~80 s per 10 s. An
# encoder taught to output the searched latents (loss.latent; configs/codec/frame_encoder_search_cpu.yaml)
# would give that in one pass, but two CPU cores search ~230 crops of 4 s an hour, and an encoder taught
# on 192 of them learnt them and not the rule (train/README.md, twenty-first session: 29 % of the search's
# gain recovered on its own crops, 5 % on held-out ones). A GPU searches crops in batches:
#   1. search SEARCH_MINUTES on the packed excerpts (train/pack_excerpts.py -> data/gpu_excerpts; the machine
#      takes 64 MiB of working tree, not data/), worker 0 of 2 -> runs/gpu-targets; a minute of worker 1
#      (disjoint crops) -> runs/gpu-targets-val, held out;
#   2. train the encoder TRAIN_MINUTES against the frozen decoder and codebooks on those targets;
#   3. score the amortisation gap on the held-out targets (eval/searched_latent_gap.py) and bring back the
#      encoder in fp16 ($OUT/encoder_final.safetensors, 13 MB), to merge here with
#      `python train/merge_decoder.py --codec checkpoints/codec --encoder encoder_final.safetensors --out DIR`
#      (the codes change: re-tokenize the corpus and train the LM on them before it ships).
#
#   SEARCH_MINUTES=4 TRAIN_MINUTES=6 OUT=/some/dir bash train/gpu_encoder_phase.sh [--set arguments for training]
set -u
SEARCH_MINUTES=${SEARCH_MINUTES:-4}
TRAIN_MINUTES=${TRAIN_MINUTES:-6}
OUT=${OUT:-outputs/gpu_encoder}
DATA=${DATA:-data/gpu_excerpts/manifest.jsonl}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-64}
STEPS=${STEPS:-100}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then  # wheels a bare machine lacks (soundfile)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 WANDB_MODE=disabled
export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1
python3 -c "import torch, soundfile; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1

search() {  # worker, minutes, folder
    python3 train/search_latents.py --codec checkpoints/codec --manifests "$DATA" --manifest-weights 1 \
        --device "$DEVICE" --steps "$STEPS" --batch "$BATCH" --shard-size $((BATCH * 4)) --worker "$1" --workers 2 \
        --minutes "$2" --out "$3" >> "$OUT/search.log" 2>&1
}
rm -rf runs/gpu-targets runs/gpu-targets-val runs/gpu-enc9
search 0 "$SEARCH_MINUTES" runs/gpu-targets || { tail -c 3000 "$OUT/search.log"; exit 1; }
search 1 0.5 runs/gpu-targets-val || { tail -c 3000 "$OUT/search.log"; exit 1; }
echo "targets: $(ls runs/gpu-targets/*.safetensors | wc -l) shards, held out: $(ls runs/gpu-targets-val/*.safetensors | wc -l)"

SECONDS_TRAIN=$(python3 -c "print(int($TRAIN_MINUTES * 60))")
timeout --foreground -s TERM $((SECONDS_TRAIN + 120)) \
    python3 -c "import sys; from musiclm.cli import main; sys.exit(main())" \
    train codec --config configs/codec/frame_encoder_search_cpu.yaml --out runs/gpu-enc9 --force \
    --set "data.manifests=[$DATA]" --set "data.latent_targets=[runs/gpu-targets]" --set data.batch_size=32 \
    --set data.latent_batch_size=32 --set trainer.precision=32-true --set trainer.num_workers=4 \
    --set trainer.num_threads=8 --set trainer.checkpoint_every=500 --set "trainer.max_minutes=$TRAIN_MINUTES" \
    "$@" > "$OUT/train.log" 2>&1

python3 eval/searched_latent_gap.py runs/gpu-targets-val checkpoints/codec runs/gpu-enc9/export > "$OUT/gap.txt" 2>&1
python3 - "$OUT" <<'EOF'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
out, export = Path(sys.argv[1]), Path("runs/gpu-enc9/export")
step = (export / "step.txt").read_text().strip()
state = {k: v.half().contiguous() for k, v in load_file(str(export / "model.safetensors")).items() if k.startswith("encoder.")}
save_file(state, str(out / "encoder_final.safetensors"), metadata={"step": step})
print(f"encoder at step {step}: {out / 'encoder_final.safetensors'}")
EOF
{
    echo "=== search"; tail -c 2000 "$OUT/search.log"
    echo "=== train"; tail -c 3000 "$OUT/train.log"; find runs/gpu-enc9 -name metrics.csv -exec tail -n 40 {} \;
    echo "=== gap (held out)"; cat "$OUT/gap.txt"
} > "$OUT/logs.txt"
rm -f "$OUT/search.log" "$OUT/train.log"
tail -c 4000 "$OUT/logs.txt"
