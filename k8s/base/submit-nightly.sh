#!/bin/sh
# Creates tonight's RayJob and waits for it; the CronJob's Job fails when the render failed.
set -eu
name=$(kubectl create -f /etc/reelfarm/nightly-rayjob.yaml -o name)
echo "created ${name}"
while :; do
    deployment=$(kubectl get "${name}" -o 'jsonpath={.status.jobDeploymentStatus}')
    case "${deployment}" in
        Complete | Failed) break ;;
    esac
    sleep 30
done
status=$(kubectl get "${name}" -o 'jsonpath={.status.jobStatus}')
echo "${name}: deployment ${deployment}, job ${status:-unknown}"
test "${status}" = SUCCEEDED
