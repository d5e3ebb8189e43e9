# run_one.sh — sourced by the lohelp scripts (run_ablation.sh,
# tokenization.sh): one training run in its own folder, resumable.
#
# Needs NOMUL (the binary), RESUME (1 after --resume) and PROG (the calling
# script's name, for messages); SETS adds --set overrides to every run.

# run_done DIR: the run in DIR has finished (its summary has the final line)
run_done() {
    [ -f "$1/summary.txt" ] && grep -q '^steps ' "$1/summary.txt"
}

# run_train LABEL DIR ARGS...: train into DIR (summary.txt from stdout,
# train.log from stderr, appended): from its last checkpoint when it has one
# (refused, the script exits 2, unless RESUME is 1), else fresh with ARGS.
# Says "== LABEL" (": resumed") first. Returns nomul's status.
run_train() {
    run_label=$1
    run_dir=$2
    shift 2
    mkdir -p "$run_dir"
    if [ -f "$run_dir/checkpoint_last.safetensors" ]; then
        if [ "$RESUME" -ne 1 ]; then
            echo "$PROG: $run_dir has a checkpoint: --resume continues it" >&2
            exit 2
        fi
        echo "== $run_label: resumed"
        set -- --resume "$run_dir/checkpoint_last.safetensors"
    else
        echo "== $run_label"
    fi
    # shellcheck disable=SC2086
    "$NOMUL" train "$@" ${SETS:-} --progress lines >"$run_dir/summary.txt" 2>>"$run_dir/train.log"
}
