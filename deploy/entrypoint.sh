#!/usr/bin/env bash
# One shardline node in the foreground: the main process of a container (deploy/Dockerfile) or of
# a systemd unit (deploy/systemd/shardline.service).
#
#   SHARDLINE_ROLE=head    start a Ray head, then `shardline up` on it (idempotent: after a
#                          restart it finds the detached actors GCS fault tolerance kept), then
#                          wait on Ray. With RAY_REDIS_ADDRESS set, the GCS keeps its state in
#                          that Redis, so actors and the terminal survive a head restart.
#   SHARDLINE_ROLE=worker  join RAY_HEAD_ADDRESS (host:port) and wait.
#   SHARDLINE_ROLE=topology  only `shardline up --address "$RAY_ADDRESS"` against a running cluster
#                          (e.g. ray://head-svc:10001 from a Kubernetes Job), then exit.
#
# SHARDLINE_SERVE_HOST and SHARDLINE_DATA_DIR override serve.host and data_dir of the config
# (SHARDLINE_CONFIG, default config/shardline.yaml): a container serves beyond loopback and
# keeps its data on a mounted volume; everything else stays as configured.
#
# SIGTERM stops this node's Ray processes; the exit status is Ray's.
set -euo pipefail

role="${SHARDLINE_ROLE:-head}"
ray_port="${RAY_PORT:-6379}"
common=(--metrics-export-port="${RAY_METRICS_EXPORT_PORT:-8080}" --disable-usage-stats --block)
if [[ -n "${RAY_NUM_CPUS:-}" ]]; then common+=(--num-cpus="$RAY_NUM_CPUS"); fi

case "$role" in
  head)
    # The custom resource that pins the execution actor here (ExecutionConfig.pin_resource).
    args=(--head --port="$ray_port" --dashboard-host=0.0.0.0
          --resources="{\"${SHARDLINE_PIN_RESOURCE:-broker_ip}\": 1}")
    if [[ -n "${RAY_REDIS_ADDRESS:-}" ]]; then
      export RAY_external_storage_namespace="${RAY_external_storage_namespace:-shardline}"
      if [[ -n "${RAY_REDIS_PASSWORD:-}" ]]; then args+=(--redis-password="$RAY_REDIS_PASSWORD"); fi
    fi
    ;;
  worker)
    : "${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS to host:port of the Ray head}"
    args=(--address="$RAY_HEAD_ADDRESS")
    if [[ -n "${RAY_WORKER_RESOURCES:-}" ]]; then args+=(--resources="$RAY_WORKER_RESOURCES"); fi
    ;;
  topology)
    : "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster (ray://head:10001)}"
    ;;
  *)
    echo "SHARDLINE_ROLE must be 'head', 'worker' or 'topology', not '$role'" >&2
    exit 2
    ;;
esac

if [[ -n "${SHARDLINE_SERVE_HOST:-}${SHARDLINE_DATA_DIR:-}" ]]; then
  effective="${TMPDIR:-/tmp}/shardline-effective.yaml"
  python - "${SHARDLINE_CONFIG:-config/shardline.yaml}" "$effective" <<'PY'
import os, sys, yaml
source, target = sys.argv[1:]
with open(source) as f:
    config = yaml.safe_load(f) or {}
if os.environ.get("SHARDLINE_SERVE_HOST"):
    config.setdefault("serve", {})["host"] = os.environ["SHARDLINE_SERVE_HOST"]
if os.environ.get("SHARDLINE_DATA_DIR"):
    config["data_dir"] = os.environ["SHARDLINE_DATA_DIR"]
with open(target, "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
PY
  export SHARDLINE_CONFIG="$effective"
fi

if [[ "$role" == topology ]]; then
  # shellcheck disable=SC2086  # SHARDLINE_UP_ARGS is a list of options
  exec shardline up --address "$RAY_ADDRESS" ${SHARDLINE_UP_ARGS:-}
fi

ray start "${args[@]}" "${common[@]}" &
ray_pid=$!
trap 'kill -TERM "$ray_pid" 2>/dev/null || true' TERM INT

if [[ "$role" == head ]]; then
  for _ in $(seq 1 90); do
    if ray status --address="127.0.0.1:$ray_port" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$ray_pid" 2>/dev/null; then wait "$ray_pid"; exit $?; fi
    sleep 2
  done
  # `up` without an address joins the head this script just started.
  # shellcheck disable=SC2086  # SHARDLINE_UP_ARGS is a list of options
  shardline up ${SHARDLINE_UP_ARGS:-}
fi

# `wait` returns early when a trapped signal arrives; wait again for Ray to finish stopping.
wait "$ray_pid" || status=$?
wait "$ray_pid" 2>/dev/null || true
exit "${status:-0}"
