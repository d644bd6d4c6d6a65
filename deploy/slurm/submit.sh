#!/usr/bin/env bash
# Submit one fleet run of pytest-mig to Slurm: N shards as a job array (one GPU each via
# --gres) and the merge as a job that depends on the whole array (afterany: it also runs
# when a shard failed, and names what is missing).
#
#   FLEET_DIR=/shared/pytest-mig deploy/slurm/submit.sh N [pytest args...]
#
# Run it from the repository checkout every node sees (the jobs start there).
# Environment: FLEET_DIR (required, shared by all nodes), SUITE (default suites/datacenter),
# PYTHON (default python3), GRES (default gpu:1), SBATCH_EXTRA (more sbatch options, e.g.
# "--partition=a100 --exclusive"), MERGE_ARGS (e.g. --force), FLEET_RUN (merged run name).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=${1:-}
if [[ ! $n =~ ^[1-9][0-9]*$ ]]; then
  echo "submit.sh: first argument N='$n' must be the number of shards, e.g. submit.sh 4" >&2
  exit 2
fi
shift
: "${FLEET_DIR:?submit.sh: set FLEET_DIR to a folder every node sees}"
FLEET_DIR=$(mkdir -p "$FLEET_DIR" && cd "$FLEET_DIR" && pwd)
mkdir -p "$FLEET_DIR/logs" "$FLEET_DIR/reports"
read -r -a extra <<< "${SBATCH_EXTRA:-}"
read -r -a merge_args <<< "${MERGE_ARGS:-}"
merge_extra=()  # the merge needs no GPU and no whole node
for a in "${extra[@]}"; do [[ $a == --exclusive* || $a == --gres* ]] || merge_extra+=("$a"); done
array=$(sbatch --parsable --array="1-$n" --gres="${GRES:-gpu:1}" "${extra[@]}" \
  --export="ALL,SHARDS=$n,FLEET_DIR=$FLEET_DIR" \
  --output="$FLEET_DIR/logs/pytest-mig-shard-%A_%a.out" "$here/shard.sbatch" "$@")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterany:$array" "${merge_extra[@]}" \
  --export="ALL,FLEET_DIR=$FLEET_DIR,ARRAY_JOB=$array" \
  --output="$FLEET_DIR/logs/pytest-mig-merge-%j.out" "$here/merge.sbatch" "${merge_args[@]}")
merge=${merge%%;*}
echo "shards: job array $array (1-$n); merge: job $merge ->" \
     "$FLEET_DIR/reports/${FLEET_RUN:-fleet-$array}"
echo "$array $merge" > "$FLEET_DIR/logs/last-submit"
