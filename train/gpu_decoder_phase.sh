#!/usr/bin/env bash
# The decoder's adversarial phase on a lent GPU machine (configs/codec/frame_gan_gpu.yaml), as one prepared
# command: such a machine is bare, lent for minutes, and takes at most 64 MiB of working tree, so the data
# travels as excerpts (train/pack_excerpts.py -> data/gpu_excerpts) and only the decoders come back (the
# encoder and codebooks are frozen: the fingerprint, and the LM trained on its tokens, stay).
#
# Three recipes train side by side on the one GPU for the same wall time (the model is small: one process
# leaves the chip mostly idle), so they compare at equal cost:
#   gan        the recipe as written (vocoder phase above 1 kHz, as shipped)
#   gan_phase  the same with learned phase in every bin (codec.frame.vocoder_phase_hz = 0): the
#              discriminator, not the waveform terms, is asked to teach phase above 1 kHz (DAC's finding)
#   recon      the control: no discriminator, the same batches and steps
# Each writes $OUT/NAME_mid.safetensors (halfway) and NAME_final.safetensors: decoder weights in fp16, to be
# merged into the shipped codec here with train/merge_decoder.py. logs.txt has the three logs and CSVs.
#
#   MINUTES=7 OUT=/some/dir bash train/gpu_decoder_phase.sh [extra --set arguments for all three]
set -u
MINUTES=${MINUTES:-7}
SECONDS_TRAIN=$(python3 -c "print(int($MINUTES * 60))")
OUT=${OUT:-outputs/gpu_decoder}
DATA=${DATA:-data/gpu_excerpts/manifest.jsonl}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then  # wheels a bare machine lacks (soundfile)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 WANDB_MODE=disabled
export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1  # 32-true training with TF32 matrix products (the STFTs stay fp32)
python3 -c "import torch, soundfile; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1

train() {
    local name=$1
    shift
    # trainer.max_minutes ends each run cleanly (checkpoint + export); timeout is only the backstop
    timeout --foreground -s TERM $((SECONDS_TRAIN + 120)) \
        python3 -c "import sys; from musiclm.cli import main; sys.exit(main())" \
        train codec --config configs/codec/frame_gan_gpu.yaml --out "runs/gpu-$name" --force \
        --init-from checkpoints/codec --set "data.manifests=[$DATA]" --set data.num_samples=0 \
        --set trainer.sample_every=0 --set trainer.precision=32-true --set trainer.num_workers=4 \
        --set trainer.checkpoint_every=500 --set "trainer.max_minutes=$MINUTES" "$@" > "$OUT/$name.log" 2>&1 &
}

snapshot() {  # decoder weights (fp16) of each run's latest export
    python3 - "$OUT" "$1" <<'EOF'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
out, tag = Path(sys.argv[1]), sys.argv[2]
for run in sorted(Path("runs").glob("gpu-*")):
    export = run / "export" / "model.safetensors"
    if not export.is_file():
        print(f"{run.name}: no export yet")
        continue
    step = (run / "export" / "step.txt").read_text().strip()
    state = {k: v.half().contiguous() for k, v in load_file(str(export)).items() if k.startswith("decoder.")}
    name = run.name.removeprefix("gpu-")
    save_file(state, str(out / f"{name}_{tag}.safetensors"), metadata={"step": step})
    print(f"{run.name}: {tag} snapshot at step {step}")
EOF
}

train gan "$@"
train gan_phase --set codec.frame.vocoder_phase_hz=0 "$@"
train recon --set loss.adversarial=false "$@"
for _ in $(seq $((SECONDS_TRAIN / 2))); do  # halfway, or sooner if every run has stopped (a broken start)
    [ -n "$(jobs -r)" ] || break
    sleep 1
done
snapshot mid
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
snapshot final
for name in gan gan_phase recon; do
    echo "=== $name"
    tail -c 3000 "$OUT/$name.log"
    find "runs/gpu-$name" -name metrics.csv -exec cat {} \;
    rm -f "$OUT/$name.log"
done > "$OUT/logs.txt"
tail -c 4000 "$OUT/logs.txt"
