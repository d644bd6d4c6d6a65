#!/usr/bin/env bash
# One fleet run on Kubernetes: the shard Indexed Job, then (when no shard pod is active any
# more, whether the shards passed or failed) the merge Job, pointed at the shards' folder.
#   deploy/k8s/run.sh [-n NAMESPACE]
# Kubernetes has no job-to-job dependency; this script (or your workflow engine: Argo,
# Tekton, a CronJob running this script) supplies it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=()
if [[ ${1:-} == -n ]]; then ns=(-n "$2"); fi
kubectl "${ns[@]}" apply -f "$here/results-pvc.yaml"
job=$(kubectl "${ns[@]}" create -f "$here/shards-job.yaml" -o name)
job=${job#job.batch/}
echo "shards: job $job"
want=$(kubectl "${ns[@]}" get job "$job" -o jsonpath='{.spec.completions}')
while :; do
  read -r ok failed < <(kubectl "${ns[@]}" get job "$job" \
    -o jsonpath='{.status.succeeded} {.status.failed}{"\n"}' | awk '{print $1+0, $2+0}')
  active=$(kubectl "${ns[@]}" get job "$job" -o jsonpath='{.status.active}')
  if (( ok >= want )) || { (( ok + failed > 0 )) && [[ -z $active ]]; }; then break; fi
  sleep 30
done
echo "shards: $ok succeeded, $failed failed; starting the merge"
sed "s/pytest-mig-shards-SET-BY-RUN-SH/$job/" "$here/merge-job.yaml" \
  | kubectl "${ns[@]}" create -f - -o name
