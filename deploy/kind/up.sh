#!/usr/bin/env bash
# Caldera on kind, for users who have Docker. NOT exercised here (no Docker engine on the
# development and CI machines); `make up` runs the embedded local cluster instead.
#
#   deploy/kind/up.sh            # cluster, Volcano, images, chart, quickstart
#   deploy/kind/down.sh          # delete the kind cluster
#
# Needs: docker, kind (>= 0.23), kubectl, helm (>= 3.14).
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-caldera}
VOLCANO_VERSION=${VOLCANO_VERSION:-1.14.0}
TAG=${TAG:-0.1.0}
NAMESPACE=${NAMESPACE:-caldera-system}

step() { printf '\n==> %s\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "missing '$1': install it first ($2)" >&2; exit 1; }; }
need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "https://helm.sh/docs/intro/install/"

step "kind cluster '$CLUSTER'"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --config deploy/kind/kind-config.yaml

step "fake GPUs: 8 nvidia.com/gpu per worker (status patch; nothing runs on them but enginesim)"
for node in $(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o name); do
  kubectl patch "$node" --subresource=status --type=merge \
    -p '{"status":{"capacity":{"nvidia.com/gpu":"8"},"allocatable":{"nvidia.com/gpu":"8"}}}'
  kubectl label --overwrite "$node" nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3
done

step "Volcano v$VOLCANO_VERSION (scheduler with gang, capacity, binpack, network-topology-aware)"
helm repo add volcano-sh https://volcano-sh.github.io/helm-charts >/dev/null
helm repo update volcano-sh >/dev/null
helm upgrade --install volcano volcano-sh/volcano --version "$VOLCANO_VERSION" \
  --namespace volcano-system --create-namespace --wait \
  -f deploy/kind/volcano-values.yaml
kubectl apply -f deploy/kind/hypernodes.yaml

step "images (controller, router, enginesim) built and loaded into kind"
for target in controller router; do
  docker build --target "$target" -t "caldera/caldera-$target:$TAG" .
  kind load docker-image --name "$CLUSTER" "caldera/caldera-$target:$TAG"
done
docker build --target enginesim -t caldera/enginesim:latest .
kind load docker-image --name "$CLUSTER" caldera/enginesim:latest

step "Caldera chart into '$NAMESPACE'"
helm upgrade --install caldera deploy/helm/caldera --namespace "$NAMESPACE" --create-namespace --wait \
  --set image.repository=caldera/caldera --set image.tag="$TAG" \
  -f deploy/kind/caldera-values.yaml

step "quickstart: a prefill/decode ModelServing of enginesim, its ModelServer, a 90/10 canary route"
kubectl apply -f examples/quickstart/
kubectl wait --for=condition=Available modelserving/qwen3-8b --timeout=10m

step "done: send a chat completion"
cat <<MSG
  kubectl -n $NAMESPACE port-forward svc/caldera-router 8080:80 &
  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"qwen3-8b","messages":[{"role":"user","content":"hello"}]}'
MSG
