#!/usr/bin/env bash
# One machine with two H200s, two commands (benchmarks/NOTES.md has the numbers they produced).
#   train: the tiny twins, one per GPU (both on GPU 0 when there is one), for each of $VARIANTS, while lm-eval's data parallelism is checked on the shipped
#          tiny twin: model folders, logs and results are written under $OUT as tar files.
#   multi: the LLaDA-8B-shaped random model: lm-eval over 1 and 2 GPUs, device_map="auto" sharding.
# Run from the repository root with lm-eval importable (the GPU machine gets it as wheels).
set -u
part=${1:?usage: h200x2_session.sh train|multi}
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
if [ "$part" = train ]; then
    # Variants (name=extra train-tiny flags), each a pair of twins.
    VARIANTS=${VARIANTS:-"base="}
    for variant in $VARIANTS; do
        name=${variant%%=*}
        flags=${variant#*=}
        mkdir -p /tmp/models_$name /tmp/logs_$name
        for twin in diffusion ar; do
            # diffusion on GPU 0, AR on GPU 1; with one GPU both share it
            gpu=$([ $twin = diffusion ] || [ "$(nvidia-smi -L | wc -l)" -lt 2 ] && echo 0 || echo 1)
            # shellcheck disable=SC2086
            CUDA_VISIBLE_DEVICES=$gpu python3 -m longllada train-tiny --twin $twin --eval-prompts 50 \
                --out-dir /tmp/models_$name --log-dir /tmp/logs_$name ${flags//,/ } >/tmp/logs_$name/$twin.out 2>&1 &
            pids="${pids:-} $!"
        done
    done
    if [ "${CHECK_LM_EVAL:-1}" = 1 ]; then
        sleep 45  # the step count may be fixed from the speed of the first steps: let that happen without other load
        python3 benchmarks/multi_gpu.py --tiny --parts lm-eval --models hf,longllada \
            --metadata '{"context_lengths":[256,512,1024],"depths":[0,50,100],"num_repeats":2}' \
            --work-dir /tmp/mg_tiny --out "$OUT/multi_gpu_tiny.json" >"$OUT/multi_gpu_tiny.log" 2>&1
    fi
    # shellcheck disable=SC2086
    wait $pids
    for variant in $VARIANTS; do
        name=${variant%%=*}
        tail -n 18 /tmp/logs_$name/diffusion.out /tmp/logs_$name/ar.out
        tar -C /tmp/models_$name -cf "$OUT/${name}_diffusion.tar" tiny-llada-diffusion
        tar -C /tmp/models_$name -cf "$OUT/${name}_ar.tar" tiny-llama-ar
        tar -C /tmp/logs_$name -czf "$OUT/${name}_train_logs.tgz" .
    done
elif [ "$part" = multi ]; then
    python3 benchmarks/multi_gpu.py --folder /tmp/llada8b-random --parts folder,lm-eval,sharded \
        --work-dir /tmp/mg_8b --out "$OUT/h200x2_multi_gpu.json" 2>&1 | tee "$OUT/h200x2_multi_gpu.log"
    tar -C /tmp/mg_8b -czf "$OUT/mg_8b_runs.tgz" .
fi
