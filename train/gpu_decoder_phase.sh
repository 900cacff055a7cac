#!/usr/bin/env bash
# The decoder's phase on a lent GPU machine (configs/codec/frame_gan_gpu.yaml), as one prepared command: such
# a machine is bare, lent for minutes, and takes at most 64 MiB of working tree, so the data travels as
# excerpts (train/pack_excerpts.py -> data/gpu_excerpts) and only the decoders come back (the encoder and
# codebooks are frozen: the fingerprint, and the LM trained on its tokens, stay).
#
# Several recipes train side by side on the one GPU for the same wall time (the model is small: one process
# leaves the chip mostly idle), so they compare at equal cost. RECIPES names them (default "gan gan_phase
# recon", the eleventh session's comparison):
#   gan         the recipe as written (vocoder phase above 1 kHz, as shipped)
#   gan_phase   the same with learned phase in every bin (codec.frame.vocoder_phase_hz = 0): the
#               discriminator, not the waveform terms, is asked to teach phase above 1 kHz (DAC's finding)
#   recon       the control: no discriminator, the same batches and steps
#   deep        recon with 12 decoder blocks instead of 8 (the new ones start as the identity) and a head MLP
#   deep_delta  deep with loss.delta 1 (the per-bin temporal-change term, losses.SpectralDeltaLoss)
# Each writes $OUT/NAME_mid.safetensors (halfway) and NAME_final.safetensors: decoder weights in fp16, to be
# merged into the shipped codec here with train/merge_decoder.py. logs.txt has the logs and CSVs, and the
# CUDA tests' tail (run beside the training: they need the GPU for seconds).
#
#   MINUTES=7 RECIPES="recon deep" MID=recon OUT=/some/dir bash train/gpu_decoder_phase.sh [--set arguments for all]
set -u
MINUTES=${MINUTES:-7}
SECONDS_TRAIN=$(python3 -c "print(int($MINUTES * 60))")
OUT=${OUT:-outputs/gpu_decoder}
DATA=${DATA:-data/gpu_excerpts/manifest.jsonl}
RECIPES=${RECIPES:-gan gan_phase recon}
MID=${MID:-$RECIPES}  # the runs snapshotted halfway too (at most 64 MiB of files come back)
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

snapshot() {  # decoder weights (fp16) of the named runs' latest exports
    python3 - "$OUT" "$@" <<'EOF'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
out, tag, names = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
for run in (Path("runs") / f"gpu-{name}" for name in names):
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

DEEP=(--set loss.adversarial=false --set codec.frame.decoder_layers=12 --set codec.frame.head_hidden=1024)
for name in $RECIPES; do
    case $name in
        gan) train gan "$@" ;;
        gan_phase) train gan_phase --set codec.frame.vocoder_phase_hz=0 "$@" ;;
        recon) train recon --set loss.adversarial=false "$@" ;;
        deep) train deep "${DEEP[@]}" "$@" ;;
        deep_delta) train deep_delta "${DEEP[@]}" --set loss.delta=1 "$@" ;;
        *) echo "unknown recipe $name"; exit 2 ;;
    esac
done
python3 -m pytest -q -p no:cacheprovider tests/test_lm_sample.py -k cuda > "$OUT/cuda_tests.log" 2>&1 &
for _ in $(seq $((SECONDS_TRAIN / 2))); do  # halfway, or sooner if every run has stopped (a broken start)
    [ -n "$(jobs -r)" ] || break
    sleep 1
done
snapshot mid $MID
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
snapshot final $RECIPES
for name in $RECIPES; do
    echo "=== $name"
    tail -c 3000 "$OUT/$name.log"
    find "runs/gpu-$name" -name metrics.csv -exec cat {} \;
    rm -f "$OUT/$name.log"
done > "$OUT/logs.txt"
{ echo "=== CUDA tests"; tail -c 3000 "$OUT/cuda_tests.log"; } >> "$OUT/logs.txt" && rm -f "$OUT/cuda_tests.log"
tail -c 4000 "$OUT/logs.txt"
