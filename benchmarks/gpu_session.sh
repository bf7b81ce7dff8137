#!/usr/bin/env bash
# The one command for a session's lent GPU machine (benchmarks/results/gpu-notes.md): the GPU
# check, whose JSON then sets the plan here (`python benchmarks/gpu_table.py RESULT.json
# --choose`), and after it the tests marked gpu
# (CUDA graphs replayed, a caller's own graph, autocast, torch.compile, bfloat16 training
# against float32, `gatedrnn train --device cuda`), which no CI machine can run. Then, with the
# time left: if a row of the check missed its target (as the plan launches after choosing from
# this run), a --tune of that row's variant, shape and dtype, each candidate checked and timed,
# whose JSON sets tiles here (`gpu_table.py RESULT.json --tuned TUNE.json --choose`); then, if
# time is left, the tiny-shakespeare training of benchmarks/tasks/shakespeare.py on the GPU
# (gatedrnn.LSTM on the triton backend against torch.nn.LSTM on cuDNN, the same weights and
# batches): the one timing of a whole training run, embedding, head and optimiser included.
# Everything printed also goes to files in $OUT, which come back even when the call is cut off.
# A launch that loses the device (an illegal address) does not cost the session its table: the
# check starts itself again without that launch (gpu_check.py --refuse, --reruns), keeping the
# lost run's JSON as $OUT/lost-LAUNCH-gpu-check-*.json.
#
#   run: bash benchmarks/gpu_session.sh          (timeout_s 600; at most ~9.5 minutes)
#
# BUDGET (seconds, default 330) is the check's time budget: it stops starting timings then,
# and is killed 150 s after. The tests get TEST_SECONDS (default 90). The tune runs if 120 s of
# SESSION_SECONDS (default 560) are left, the training if 90 s are, on runs/tinyshakespeare.txt
# where a copy was put there, else on the stdlib corpus; TASK_ARGS add to its arguments.
# GPU_CHECK_ARGS add to the check's arguments (a dry run here: TRITON_INTERPRET=1 OUT=/tmp/out
# GPU_CHECK_ARGS="--dry-run --variants lstm --shapes G4 --dtypes f32" bash
# benchmarks/gpu_session.sh; the tune takes "--dry-run" from them).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
BUDGET=${BUDGET:-330}
TEST_SECONDS=${TEST_SECONDS:-90}
SESSION_SECONDS=${SESSION_SECONDS:-560}
TASK_DATA=stdlib
[ -f runs/tinyshakespeare.txt ] && TASK_DATA=runs/tinyshakespeare.txt
export PYTHONPATH=. PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv \
    > "$OUT/nvidia-smi.csv" 2>&1
# shellcheck disable=SC2086  # GPU_CHECK_ARGS is a list of arguments
timeout --kill-after=10 $((${BUDGET%.*} + 150)) python3 benchmarks/gpu_check.py \
    --budget "$BUDGET" --out "$OUT" ${GPU_CHECK_ARGS:-} 2>&1 | tee "$OUT/gpu-check.log"
check=${PIPESTATUS[0]}
# The backend's own numbers and its CUDA graphs first: if TEST_SECONDS runs out, it runs out on
# the others (autocast, torch.compile, the command line's training).
first="tests/test_triton.py tests/test_graphs.py"
rest=$(ls tests/test_*.py | grep -v -e /test_triton.py -e /test_graphs.py)
# shellcheck disable=SC2086  # lists of files
timeout --kill-after=10 "$TEST_SECONDS" python3 -m pytest -m gpu -q -x -p no:cacheprovider \
    $first $rest 2>&1 | tee "$OUT/gpu-tests.log"
tests=${PIPESTATUS[0]}
# The row furthest over its target as the plan launches once it has chosen from this run
# ($OUT/choices.json; the package's stays as it is: there the JSON sets it anew).
check_json=$(ls "$OUT"/gpu-check-*.json 2>/dev/null | head -n 1)
worst=""
if [ -n "$check_json" ]; then
    worst=$(python3 benchmarks/gpu_table.py "$check_json" --choose --worst \
        --choices "$OUT/choices.json" 2>"$OUT/gpu-choose.log")
fi
dry=""
case " ${GPU_CHECK_ARGS:-} " in *" --dry-run "*) dry="--dry-run" ;; esac
left=$(( SESSION_SECONDS - SECONDS ))
tune="not run: no row missed its target"
[ -n "$worst" ] && tune="not run: $worst missed its target, only ${left} s left"
if [ -n "$worst" ] && [ "$left" -ge 120 ]; then
    read -r variant shape dtype <<< "$worst"
    timeout --kill-after=10 $(( left - 10 )) python3 benchmarks/gpu_check.py --no-correctness \
        --tune "$variant" --shapes "$shape" --dtypes "$dtype" --budget $(( left - 40 )) \
        --choices "$OUT/choices.json" --out "$OUT" $dry 2>&1 | tee "$OUT/gpu-tune.log"
    tune="$worst: exit ${PIPESTATUS[0]}"
fi
left=$(( SESSION_SECONDS - SECONDS ))
task="not run: ${left} s left"
if [ "$left" -ge 90 ]; then
    # shellcheck disable=SC2086  # TASK_ARGS is a list of arguments
    timeout --kill-after=10 "$left" python3 benchmarks/tasks/shakespeare.py --data "$TASK_DATA" \
        ${TASK_ARGS:-} 2>&1 | tee "$OUT/task-shakespeare.log"
    task="exit ${PIPESTATUS[0]}"
    cp benchmarks/results/task-shakespeare-*.json "$OUT/" 2>/dev/null
fi
echo "gpu_session: gpu_check exit $check, GPU tests exit $tests, tune $tune, training $task"
exit $(( check != 0 ? check : tests ))
