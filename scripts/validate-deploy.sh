#!/usr/bin/env bash
# Validates the Kubernetes objects of deploy/kubernetes/ against Kubernetes' OpenAPI schemas
# (kubernetes-validate --strict: unknown fields, wrong types, missing required fields), with the
# pinned tool scripts/install-deps.sh installs. Run by scripts/test-all.sh.
#
# Not covered here: kustomization.yaml and kube-scheduler/config.yaml (a KubeSchedulerConfiguration)
# are not API objects and have no schema in that set; scheduler-plugin/tests/deploy.rs decodes
# them (and checks that the ports, paths and image agree with colo-scheduler).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${COLO_DEPLOY_TOOLS:-/var/cache/colo/deploy-tools}
validate="$TOOLS/bin/kubernetes-validate"
if [ ! -x "$validate" ]; then
  echo "validate-deploy: $validate is missing; run scripts/install-deps.sh" >&2
  exit 1
fi
mapfile -t objects < <(find deploy/kubernetes -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)
if ((${#objects[@]} == 0)); then
  echo "validate-deploy: no objects in deploy/kubernetes" >&2
  exit 1
fi
out=$("$validate" --strict "${objects[@]}" 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out"
# A kind without a schema is only a warning to the tool: here it is a mistake (a misspelt
# apiVersion or kind).
if grep -q "Couldn't find schema" <<<"$out"; then
  echo "validate-deploy: an object has no schema (misspelt apiVersion or kind?)" >&2
  exit 1
fi
echo "validate-deploy: ${#objects[@]} objects valid"
