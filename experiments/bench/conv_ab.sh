#!/bin/sh
# conv_ab.sh — one convolution pass timed on two builds in turn: the library
# at REV (built in a temporary git worktree) and the working tree's, ROUNDS
# rounds alternating, best of each; prints both and base / new speed.
#
#   sh experiments/bench/conv_ab.sh REV ROUNDS CIN COUT HW K STRIDE PASS MODE
#
# (arguments after ROUNDS: experiments/bench/conv_pass_bench.c's). Run from
# the repository root, on an idle machine; REV needs nomul's public conv
# API only, so any revision since the conv2d interface will do.
set -eu
[ $# -eq 9 ] || { echo "usage: sh $0 REV ROUNDS CIN COUT HW K STRIDE PASS MODE" >&2; exit 2; }
rev=$1 rounds=$2
shift 2
wt=$(mktemp -d /tmp/nomul-ab.XXXXXX)
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true; rm -rf "$wt" build-ab' EXIT
git worktree add -q --detach "$wt" "$rev"
make -s -C "$wt" -j2 build/libnomul.a
make -s -j2 build/conv_pass_bench
make -s BUILD=build-ab CONV_BENCH_LIB="$wt/build/libnomul.a" build-ab/conv_pass_bench
base=1e30 new=1e30
i=0
while [ $i -lt "$rounds" ]; do
    a=$(build-ab/conv_pass_bench "$@" | sed 's/.*: //;s/ ms//')
    b=$(build/conv_pass_bench "$@" | sed 's/.*: //;s/ ms//')
    base=$(awk -v x="$a" -v y="$base" 'BEGIN { print (x < y ? x : y) }')
    new=$(awk -v x="$b" -v y="$new" 'BEGIN { print (x < y ? x : y) }')
    i=$((i + 1))
done
line=$(build/conv_pass_bench "$@" 1 | sed 's/: .*//')
awk -v l="$line" -v r="$rev" -v a="$base" -v b="$new" \
    'BEGIN { printf "%s: %s %.3f ms, working tree %.3f ms, %.2fx the speed\n", l, r, a, b, a / b }'
