#!/usr/bin/env bash
# run.sh [go test flags...]: the whole end-to-end suite (make e2e).
# Installs what is missing (setup.sh), then runs every scenario against
# private Dovecot and Postfix instances. Extra arguments go to go test,
# for example: ./e2e/run.sh -run TestInboundRoundTrip
# Must run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
./e2e/setup.sh
exec go test -tags e2e -count=1 -v -timeout 40m "$@" ./e2e/...
