#!/usr/bin/env bash
# genseg vs the PyTorch reference, same machine, same command, same thread count.
# Prints ms/step for both, the ratio genseg/PyTorch (lower is better) and genseg's GFLOP/s
# against this CPU's fp32 peak (PEAK_GFLOPS, default 157 = 2 cores x AVX2 FMA).
set -euo pipefail
cd "$(dirname "$0")/.."
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
# The dev profile builds dependencies at opt-level 3 and genseg at 1; the arithmetic runs in
# libtorch either way, so the shared target dir is reused instead of a second full build.
cargo build -q
BIN=${CARGO_TARGET_DIR:-target}/debug/genseg
PY=.venv/bin/python
THREADS=${THREADS:-2}
PEAK=${PEAK_GFLOPS:-157}
STEPS=${STEPS:-5}
# ONLY=unet,predict runs just those groups: metrics unet deeplab swin gan augment predict amp
# phases gan-recipe schedule.
want() { [[ -z ${ONLY:-} || ,$ONLY, == *,$1,* ]]; }
# genseg's flags as reference.py's: `--precision bf16` is `--amp` there, `--precision fp32` nothing.
ref_args() {
  local arg prec=0
  for arg in "$@"; do
    if ((prec)); then prec=0; [[ $arg == bf16 ]] && echo --amp; continue; fi
    if [[ $arg == --precision ]]; then prec=1; continue; fi
    echo "$arg"
  done
}
run() { # what, args...
  local what=$1; shift
  local ours ref ref_cl=null rargs
  mapfile -t rargs < <(ref_args "$@")
  ours=$($BIN --device cpu --threads "$THREADS" bench "$what" "$@" --steps "$STEPS")
  ref=$($PY bench/reference.py "$what" "${rargs[@]}" --steps "$STEPS" --threads "$THREADS")
  # genseg feeds U-Net and DeepLab channels-last input on the CPU; PyTorch given the same layout:
  if [[ $what == unet || $what == deeplab ]]; then
    ref_cl=$($PY bench/reference.py "$what" "${rargs[@]}" --steps "$STEPS" --threads "$THREADS" --channels-last)
  fi
  $PY - "$ours" "$ref" "$PEAK" "$ref_cl" <<'PY'
import json, sys
o, r, peak, rcl = json.loads(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
flops = (f"{o['gflops']:6.1f} GFLOP/s = {100 * o['gflops'] / peak:.0f}% of {peak:.0f} ({o['gflop_per_step']:.1f} GFLOP/step, "
         if o["gflops"] is not None else "(")
if o["what"].startswith(("unet", "deeplab", "swin")) and o["params"] != r["params"]:
    print(f"warning: {o['what']}: genseg has {o['params']:,} parameters, the PyTorch reference {r['params']:,}")
cl = f"  (pytorch channels-last {rcl['ms_per_step']:.1f} ms, ratio {o['ms_per_step'] / rcl['ms_per_step']:.2f})" if rcl else ""
print(f"{o['what']:<34} genseg {o['ms_per_step']:8.1f} ms  pytorch {r['ms_per_step']:8.1f} ms  "
      f"ratio {o['ms_per_step'] / r['ms_per_step']:.2f}  {flops}{o['params']:,} params){cl}")
PY
}
want metrics && $BIN --threads "$THREADS" bench metrics
want unet && run unet --width 64 --depth 5 --size 128 --batch 4
want unet && run unet --width 16 --depth 4 --size 64 --batch 4
want deeplab && run deeplab --backbone resnet18 --size 128 --batch 4
want deeplab && run deeplab --backbone resnet50 --size 128 --batch 4
want swin && run swin-unet --window 4 --size 128 --batch 4
want gan && run gan --width 32 --size 128 --batch 2
want gan && run gan --width 32 --size 128 --batch 2 --separate-ops
want gan && run gan --width 16 --size 64 --batch 4
# The nnunet augmentation preset's cost on a 64 px batch-4 step (issue 11 budget: +15 %).
want augment && $BIN --device cpu --threads "$THREADS" bench augment --width 16 --depth 4 --size 64 --batch 4 --steps 20
# Prediction speed at 256 px against PyTorch eval of the same U-Net (issue 14: a w16 U-Net at
# >= 25 images/s on the 2-core CPU; predict <= 1.0x PyTorch's time).
predict() { # width, batch, genseg's extra flags...
  local w=$1 b=$2 ours ref ref_cl rargs; shift 2
  mapfile -t rargs < <(ref_args "$@")
  ours=$($BIN --device cpu --threads "$THREADS" bench predict --width $w --depth 5 --size 256 --batch $b --steps 5 "$@")
  ref=$($PY bench/reference.py predict --width $w --depth 5 --size 256 --batch $b --steps 5 --threads "$THREADS" "${rargs[@]}")
  ref_cl=$($PY bench/reference.py predict --width $w --depth 5 --size 256 --batch $b --steps 5 --threads "$THREADS" --channels-last "${rargs[@]}")
  $PY - "$ours" "$ref" "$ref_cl" <<'PY'
import json, sys
ours, ref, cl = sys.argv[1].splitlines(), json.loads(sys.argv[2]), json.loads(sys.argv[3])
per_s = float(ours[0].split(": ")[1].split()[0])
print(f"{ours[0]}  pytorch {ref['images_per_s']:.1f} images/s  time ratio {ref['images_per_s'] / per_s:.2f}  "
      f"(channels-last {cl['images_per_s']:.1f}, ratio {cl['images_per_s'] / per_s:.2f}; {ours[1].split(', ')[1]})")
PY
}
want predict && for w in 16 32 64; do for b in 1 8; do predict $w $b; done; done
# bf16 autocast (--precision bf16) against PyTorch's torch.autocast(dtype=torch.bfloat16) of the
# same networks (issue 14); fast only where the CPU has bf16 arithmetic (AVX-512 BF16, AMX).
want amp && run unet --width 64 --depth 5 --size 128 --batch 4 --precision bf16
want amp && run unet --width 16 --depth 4 --size 64 --batch 4 --precision bf16
want amp && run gan --width 16 --size 64 --batch 4 --precision bf16
want amp && for w in 16 64; do predict $w 1 --precision bf16; done
# Each phase of a genseg iteration against a plain step (64 px, batch 4).
want phases && $BIN --device cpu --threads "$THREADS" bench phases --width 16 --depth 4 --size 64 --batch 4 --steps 10
# The data-efficient GAN options' cost on a 64 px batch-4 GAN step (issue 12 budget: +20 %).
want gan-recipe && $BIN --device cpu --threads "$THREADS" bench gan-recipe --width 16 --size 64 --batch 4 --steps 20

# A genseg iteration of the real training loop (the verdict's recipe) over a plain one, with the
# GAN and upper-level steps every 1, 4 and 8 iterations (issue 14: <= 3 plain iterations).
want schedule && $BIN --device cpu --threads "$THREADS" bench schedule --width 16 --depth 4 --size 64 --batch 4 --steps 24 --every 1,4,8
true  # a filtered-out last group is not a failure
