#!/bin/sh
# The production image's command: tritonserver with slamctl's flags, defined once for
# Docker, compose and Kubernetes (extra arguments are appended).
#  - the exported configs are complete: never auto-complete them (a wrong one fails loudly)
#  - /v2/health/ready means every model is loaded (strict readiness)
#  - model control, shared memory, statistics, trace and logging need the header slamctl-admin: TOKEN, with
#    TOKEN from $SLAMCTL_ADMIN_TOKEN; unset, a random one nobody knows (those APIs closed)
#  - gRPC over TLS when $SLAMCTL_TLS_CERT and $SLAMCTL_TLS_KEY name a mounted certificate
set -eu
token="${SLAMCTL_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
restricted="model-repository,shared-memory,statistics,trace,logging:slamctl-admin=$token"
set -- --model-repository=/models --strict-readiness=true --disable-auto-complete-config \
    --allow-metrics=true --allow-gpu-metrics=true --metrics-port=8002 \
    --grpc-restricted-protocol="$restricted" --http-restricted-api="$restricted" "$@"
if [ -n "${SLAMCTL_TLS_CERT:-}" ]; then
    : "${SLAMCTL_TLS_KEY:?SLAMCTL_TLS_CERT is set: set SLAMCTL_TLS_KEY to the certificate key}"
    set -- "$@" --grpc-use-ssl=true --grpc-server-cert="$SLAMCTL_TLS_CERT" --grpc-server-key="$SLAMCTL_TLS_KEY"
fi
exec tritonserver "$@"
