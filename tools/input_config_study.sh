#!/bin/sh
# The input-configuration study (docs/evaluation.md, "The input-configuration report"): every cell
# of the one-factor-at-a-time design, run resumably from a fixed commit.
#
#   sh tools/input_config_study.sh COMMIT [EPOCHS] [SEEDS] [cells|epochs|ceiling]
#   sh tools/input_config_study.sh COMMIT EPOCHS "[3,4]" final OVERRIDES...
#
# "epochs" runs only the reference and the base (static_cnn, early_fusion) at EPOCHS: the
# candidates from which the training length is chosen on id_val (docs/training.md,
# tools/choose_epochs.py); "cells" (the default) runs every cell of the design; "ceiling" trains
# static_cnn, early_fusion and the oracle in CONUS, the tropics and India on
# data=synthetic_ceiling (splits synthetic_<region>_id), for the ceiling of the temporal gain per
# region (Europe's row is the cells' own); "final" trains the
# reference and the configuration OVERRIDES select (the best sequence configuration on id_val,
# tools/best_on_val.py) with more seeds, for the static-vs-best-temporal comparison.
#
# The code runs from a clean checkout of COMMIT (a git worktree under runs/code-<commit>, with a
# virtual environment that reuses this checkout's dependencies), so every record of the study
# carries one commit and a relaunch after new commits on the branch finds the run folder and
# skips the jobs it finished. Records go to runs/study, one run folder per training length;
# report the chosen length's folder with
#   qpebench report input-config runs/study/synthetic_europe_factors-<hash> --out DIR
# Cells (all at param_budget=150000 on data=synthetic_factors split=synthetic_europe_factors):
#   reference: static_cnn (last frame, 7 bands)
#   base:      early_fusion, 4 frames (45 min of SEVIRI), step 1, 7 bands
#   frames:    early_fusion 2, 6            step: early_fusion 4 frames at step 2 (90 min)
#   bands:     early_fusion with IR10.8 alone; with IR8.7, IR10.8, IR12.0
#   network:   conv3d_time, conv4d_factorized, convgru (4 frames, 7 bands)
#   oracle:    static_cnn with the hidden life-cycle fields (the ceiling of the temporal gain)
set -eu
COMMIT=$(git rev-parse --short=12 "${1:?usage: input_config_study.sh COMMIT [EPOCHS] [SEEDS] [MODE]}")
EPOCHS=${2:-12}
SEEDS=${3:-[0,1,2]}
MODE=${4:-cells}
ROOT=$(pwd)
CODE="$ROOT/runs/code-$COMMIT"
if [ ! -d "$CODE" ]; then
    git worktree add --detach "$CODE" "$COMMIT"
fi
if [ ! -x "$CODE/.venv/bin/qpebench" ]; then
    # a venv of its own for the worktree's qpebench; its dependencies (and pip) are this
    # checkout's, reached through a path file
    "$ROOT/.venv/bin/python" -m venv --without-pip "$CODE/.venv"
    SITE=$("$ROOT/.venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    OWN=$("$CODE/.venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "$SITE" > "$OWN/_shared_deps.pth"
    (cd "$CODE" && .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation .)
fi
DATA=synthetic_factors
SPLIT=synthetic_europe_factors
run() {
    (cd "$CODE" && .venv/bin/qpebench run data="$DATA" split="$SPLIT" \
        param_budget=150000 train.epochs="$EPOCHS" "seeds=$SEEDS" progress=false \
        paths.runs="$ROOT/runs/study" paths.cache="$ROOT/.cache/qpebench" "$@")
}
ORACLE="+model_params.static_cnn.oracle_inputs=[cell_cover,cell_stage,shield_trend]"
if [ "$MODE" = epochs ]; then
    run "models=[static_cnn,early_fusion]"
    exit 0
fi
if [ "$MODE" = final ]; then
    shift 4
    run "models=[static_cnn]"
    run "$@"
    exit 0
fi
if [ "$MODE" = ceiling ]; then
    DATA=synthetic_ceiling
    # Europe's row is the factor study's (same data size, years, split rule, epochs and seeds:
    # synthetic_europe_factors trains, selects and tests Europe exactly as synthetic_europe_id)
    for region in conus tropics india; do
        SPLIT="synthetic_${region}_id"
        run "models=[static_cnn,early_fusion]"
        run "models=[static_cnn]" "$ORACLE"
    done
    exit 0
fi
run "models=[static_cnn,early_fusion,conv3d_time,conv4d_factorized,convgru]"
for frames in 2 6; do
    run "models=[early_fusion]" "+model_params.early_fusion.frames=$frames"
done
run "models=[early_fusion]" "+model_params.early_fusion.step=2"
run "models=[early_fusion]" "+model_params.early_fusion.bands=[IR10.8]"
run "models=[early_fusion]" "+model_params.early_fusion.bands=[IR8.7,IR10.8,IR12.0]"
run "models=[static_cnn]" "$ORACLE"
