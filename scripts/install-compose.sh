#!/usr/bin/env bash
# Makes `docker compose` available for validating docker-compose.yml (no Docker engine is needed for
# `docker compose config`). Uses an installed plugin if there is one; otherwise builds Docker Compose v2 from
# the Go module proxy into ~/.docker/cli-plugins (a few minutes once; cached after).
set -euo pipefail
COMPOSE_VERSION=v2.39.4
if docker compose version >/dev/null 2>&1; then
  exit 0
fi
command -v docker >/dev/null || { echo "install-compose: the docker CLI is missing (apt-get install docker.io)"; exit 1; }
command -v go >/dev/null || { echo "install-compose: go is needed to build docker compose"; exit 1; }
echo "install-compose: building docker compose $COMPOSE_VERSION from the Go module proxy"
dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$HOME/.docker/cli-plugins"
(cd "$dir" && go build -o "$HOME/.docker/cli-plugins/docker-compose" ./cmd)
docker compose version
