#!/usr/bin/env bash
# Run one wsb-gpu command on a Slurm cluster: this job is the *driver* (Dask scheduler +
# client, light on resources); the Dask workers are started as further Slurm jobs by
# dask-jobqueue's SLURMCluster, described by jobqueue.yaml (see docs/slurm.md).
#
#   sbatch scripts/submit_slurm.sh --config run.yaml                 # = ... cluster-check
#   sbatch scripts/submit_slurm.sh --config run.yaml run --out runs/2024
#   sbatch --time=12:00:00 scripts/submit_slurm.sh --config gpu.yaml --backend gpu run
#
# Arguments are passed to `wsb-gpu --cluster slurm ...`; without a command, `cluster-check`
# runs. Submit from the repository (or set WSB_GPU_DIR): the job runs there.
#
# The Python environment, chosen by environment variables at submission time:
#   WSB_GPU_VENV=/path/to/venv      activate this virtual environment
#   WSB_GPU_CONDA_ENV=wsb_gpu       `conda activate` this environment
#   WSB_GPU_MODULES="cuda/12.4"     `module load` these first (space separated)
#   default: ./.venv of the submission directory if it exists, else the current PATH.
#
# Workers are shut down however this job ends: normally by the driver; on failure, on
# scancel of this job or when its time limit nears (SIGTERM, see --signal below) by a trap
# that cancels every worker job of this driver by its unique job name.
#
# --- driver job resources (override on the sbatch command line) ------------------------------
#SBATCH --job-name=wsb-driver
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#   Output of the driver (the report of cluster-check, progress, errors); %j = job id.
#SBATCH --output=wsb-driver-%j.out
#   SIGTERM to this script 120 s before the time limit, so that the trap below can cancel
#   the worker jobs before Slurm kills the driver.
#SBATCH --signal=B:TERM@120
set -uo pipefail

cd "${WSB_GPU_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}" || { echo "submit_slurm: cannot cd to the submission directory" >&2; exit 2; }

# --- environment -------------------------------------------------------------------------------
if [ -n "${WSB_GPU_MODULES:-}" ] && command -v module >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    module load $WSB_GPU_MODULES
fi
if [ -n "${WSB_GPU_VENV:-}" ]; then
    # shellcheck disable=SC1091
    source "$WSB_GPU_VENV/bin/activate" || { echo "submit_slurm: cannot activate WSB_GPU_VENV=$WSB_GPU_VENV" >&2; exit 2; }
elif [ -n "${WSB_GPU_CONDA_ENV:-}" ]; then
    eval "$(conda shell.bash hook 2>/dev/null)" && conda activate "$WSB_GPU_CONDA_ENV" \
        || { echo "submit_slurm: cannot conda activate WSB_GPU_CONDA_ENV=$WSB_GPU_CONDA_ENV" >&2; exit 2; }
elif [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi
if command -v wsb-gpu >/dev/null 2>&1; then
    WSB=(wsb-gpu)
else
    WSB=(python -m wsb_gpu.cli)
fi

# --- arguments: add the default command when only global options were given ---------------
args=("$@")
has_command=0
i=0
while [ "$i" -lt "${#args[@]}" ]; do
    case "${args[$i]}" in
        --config|--backend|--cluster|--workers|--profile) i=$((i + 2)) ;;
        --config=*|--backend=*|--cluster=*|--workers=*|--profile=*) i=$((i + 1)) ;;
        -*) i=$((i + 1)) ;;
        *) has_command=1; break ;;
    esac
done
[ "$has_command" = 1 ] || args+=("cluster-check")

# Worker jobs get a name unique to this driver (wsb_gpu reads it through dask's config
# convention), which the cleanup below cancels by.
JOB_ID="${SLURM_JOB_ID:-$$}"
export DASK_WSB_GPU__CLUSTER__SLURM__JOB_NAME="wsb-worker-${JOB_ID}"
WORKER_NAME="$DASK_WSB_GPU__CLUSTER__SLURM__JOB_NAME"
ME="$(id -un)"

cleanup() {
    local left
    left="$(squeue -h -u "$ME" -n "$WORKER_NAME" -o %i 2>/dev/null | tr '\n' ' ')"
    if [ -n "${left// /}" ]; then
        echo "submit_slurm: cancelling worker jobs still present: $left" >&2
        scancel -u "$ME" -n "$WORKER_NAME" 2>/dev/null || true
    fi
}
child=""
on_signal() {
    echo "submit_slurm: $1 received, stopping the driver and its workers" >&2
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
    # Give the driver a moment to close the cluster itself; the trap on EXIT cancels the rest.
    for _ in $(seq 1 20); do kill -0 "$child" 2>/dev/null || break; sleep 1; done
    exit 143
}
trap cleanup EXIT
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGINT' INT

echo "submit_slurm: job ${JOB_ID} on $(hostname) in $PWD at $(date -Is)"
echo "submit_slurm: python $(command -v python), worker jobs named ${WORKER_NAME}"
echo "submit_slurm: ${WSB[*]} --cluster slurm ${args[*]}"

# Run in the background and `wait`, so that signals reach the trap without waiting for the
# driver to finish.
"${WSB[@]}" --cluster slurm "${args[@]}" &
child=$!
wait "$child"
rc=$?
echo "submit_slurm: wsb-gpu exited with status $rc at $(date -Is)"
exit "$rc"
