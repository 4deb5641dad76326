#!/usr/bin/env bash
# PBS Pro / Torque batch job for `tandem train`. From the repository root, after building the release
# binary on a node of the kind the job runs on (its flags target that CPU):
#   qsub -v CONFIG=configs/bert-base-128.yaml launch/pbs.sh
#   qsub -l select=4:ncpus=32:mpiprocs=8:ompthreads=4 -l walltime=12:00:00 \
#        -v CONFIG=configs/bert-base-128.yaml,TANDEM_ARGS="--set train.micro_batch=8" launch/pbs.sh
# PBS Pro: one rank per mpiproc, OpenBLAS threads per rank = ompthreads (ncpus / mpiprocs). Torque:
# -l nodes=2:ppn=32 with -v TANDEM_THREADS=8,... runs ppn / TANDEM_THREADS ranks per node. Every start runs `--resume auto`, so a resubmitted job continues from its newest checkpoint.
#
# Walltime: PBS sends no warning before it kills a job, so the script keeps its own clock: TANDEM_LEAD
# seconds (default 120) before the walltime (from qstat, or TANDEM_WALLTIME in seconds) it sends SIGUSR1
# to mpirun, which propagates it to every rank (SIGTERM would make mpirun kill them a few seconds
# later); every rank stops after the same step with a checkpoint and exits 0. The job then submits itself
# again with the same variables (ordinary users may not `qrerun`), unless TANDEM_RESUBMIT=0.
# Restarts (TANDEM_RESTARTS=N, default 0): when the run fails (a rank or a node lost), start it again from
# its newest valid checkpoint, at most N times, on the job's nodes that still answer `$TANDEM_RSH NODE
# true` (default ssh), with as many ranks per node as before: the world size shrinks with the nodes
# lost, which resume and the sampler allow.
# Environment (qsub -v, comma-separated, so no commas inside values): CONFIG (required), TANDEM_ARGS
# (more `tandem train` options, split on spaces), TANDEM_BIN (default .build/release/tandem),
# TANDEM_THREADS, TANDEM_MPIRUN_ARGS (extra mpirun arguments, split on spaces), TANDEM_RESTARTS,
# TANDEM_RSH.
#PBS -N tandem
#PBS -l select=2:ncpus=32:mpiprocs=4:ompthreads=8
#PBS -l walltime=24:00:00
#PBS -j oe
#PBS -r y
set -uo pipefail

cd "${PBS_O_WORKDIR:-$PWD}" || exit 1
config=${CONFIG:?set CONFIG: qsub -v CONFIG=configs/NAME.yaml launch/pbs.sh}
bin=${TANDEM_BIN:-.build/release/tandem}
[ -x "$bin" ] || { echo "tandem: no executable at $bin (build with launch/common.sh's flags, or set TANDEM_BIN)" >&2; exit 1; }
nodefile=${PBS_NODEFILE:?PBS_NODEFILE is not set: submit with qsub}

nodes=$(sort -u "$nodefile" | grep -c .)
threads=${TANDEM_THREADS:-${OMP_NUM_THREADS:-1}}
if [ -n "${PBS_NUM_PPN:-}" ]; then
    # Torque lists each node once per core (ppn): a rank takes `threads` of them.
    per_node=$((PBS_NUM_PPN / threads))
else
    # PBS Pro lists each node once per mpiproc: one rank each.
    per_node=$(($(grep -c . "$nodefile") / nodes))
fi
ranks=$((nodes * per_node))
[ "$ranks" -ge 1 ] || { echo "tandem: no rank fits: $threads threads per rank on ${PBS_NUM_PPN:-?} cores per node" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
read -r -a args <<< "${TANDEM_ARGS:-}"
read -r -a extra <<< "${TANDEM_MPIRUN_ARGS:-}"
restarts=${TANDEM_RESTARTS:-0}
[[ $restarts =~ ^[0-9]+$ ]] || { echo "tandem: TANDEM_RESTARTS takes a count, not $restarts" >&2; exit 2; }
# Each rank bound to its own cores (PE = threads per rank), per_node ranks per node.
make_launch() { # over the nodes of $1 (a node file)
    ranks=$(($(sort -u "$1" | grep -c .) * per_node))
    launch=(mpirun -np "$ranks" --hostfile "$1" --map-by "ppr:$per_node:node:PE=$threads" --bind-to core
            -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS "${extra[@]}")
}
make_launch "$nodefile"
train=("$bin" train "$config" --resume auto --set train.threads="$threads" "${args[@]}")

echo "tandem: job ${PBS_JOBID:-?}: $ranks ranks on $nodes node(s), $threads OpenBLAS thread(s) each"
echo "tandem: ${launch[*]} ${train[*]}"

# Seconds of walltime: TANDEM_WALLTIME, else Resource_List.walltime (HH:MM:SS) from qstat.
walltime=${TANDEM_WALLTIME:-}
if [ -z "$walltime" ] && command -v qstat >/dev/null && [ -n "${PBS_JOBID:-}" ]; then
    hms=$(qstat -f "$PBS_JOBID" 2>/dev/null | sed -n 's/^ *Resource_List.walltime = //p')
    [ -n "$hms" ] && walltime=$(echo "$hms" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
fi

stopped_early=$(mktemp)
# The running launcher's PID, for the clock (it changes with each restart).
launcher_pid=$(mktemp)
live_nodes=$(mktemp)
"${launch[@]}" "${train[@]}" &
launcher=$!
echo "$launcher" > "$launcher_pid"
timer=""
if [ -n "$walltime" ]; then
    delay=$((walltime - ${TANDEM_LEAD:-120} - SECONDS))
    [ "$delay" -lt 1 ] && delay=1
    # The clock: a subshell that sleeps, then signals; killed (with its sleep) when the run ends first.
    ( trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
      sleep "$delay" & sleeper=$!
      wait "$sleeper"
      running=$(cat "$launcher_pid")
      if kill -0 "$running" 2>/dev/null; then
          echo "tandem: walltime near: asking every rank to stop with a checkpoint"
          echo 1 > "$stopped_early"
          kill -USR1 "$running"
      fi ) &
    timer=$!
fi

attempt=0
read -r -a rsh <<< "${TANDEM_RSH:-ssh -o BatchMode=yes -o ConnectTimeout=5}"
while :; do
    wait "$launcher"; status=$?
    # A failure, not the walltime stop: restart while restarts are left, on the nodes that answer.
    if [ "$status" -eq 0 ] || [ -s "$stopped_early" ] || [ "$attempt" -ge "$restarts" ]; then break; fi
    attempt=$((attempt + 1))
    : > "$live_nodes"
    while read -r node; do
        if timeout 30 "${rsh[@]}" "$node" true </dev/null >/dev/null 2>&1; then
            grep -xF "$node" "$nodefile" >> "$live_nodes"
        else echo "tandem: node $node does not answer (${rsh[*]} $node true): leaving it out"; fi
    done < <(sort -u "$nodefile")
    [ -s "$live_nodes" ] || { echo "tandem: no node answers: giving up"; break; }
    make_launch "$live_nodes"
    echo "tandem: the run failed (status $status): restart $attempt of $restarts from the newest valid checkpoint, $ranks ranks on $(sort -u "$live_nodes" | paste -sd, -)"
    echo "tandem: ${launch[*]} ${train[*]}"
    sleep 2
    "${launch[@]}" "${train[@]}" &
    launcher=$!
    echo "$launcher" > "$launcher_pid"
done
[ -n "$timer" ] && kill "$timer" 2>/dev/null
if [ "$status" -eq 0 ] && [ -s "$stopped_early" ] && [ "${TANDEM_RESUBMIT:-1}" = 1 ]; then
    echo "tandem: stopped with a checkpoint before the walltime: submitting the job again"
    vars="CONFIG=$config"
    for v in TANDEM_ARGS TANDEM_BIN TANDEM_THREADS TANDEM_MPIRUN_ARGS TANDEM_LEAD TANDEM_WALLTIME TANDEM_RESTARTS TANDEM_RSH; do
        [ -n "${!v:-}" ] && vars+=",$v=${!v}"
    done
    qsub -v "$vars" "$PWD/launch/pbs.sh"
fi
rm -f "$stopped_early" "$launcher_pid" "$live_nodes"
exit "$status"
