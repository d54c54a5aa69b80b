#!/usr/bin/env bash
# Builds Tether's image with one command, with or without access to a registry.
#
#   scripts/build-image.sh IMAGE            e.g. scripts/build-image.sh tether:1.0
#
# It makes every image docker-stack.yml needs: IMAGE (Tether: control plane and proxies) and
# tether-redis:local (the stack's Redis; REDIS_IMAGE overrides it in the stack), so a swarm with
# no registry deploys the stack as well as one with.
#
# Base image, in this order:
#   1. BASE_IMAGE, when set (any Node 20 image; the Dockerfile adds HAProxy and tini if missing);
#   2. node:20-bookworm-slim, when it is here already or `docker pull` gets it;
#   3. otherwise (no registry; or TETHER_BUILD_PULL=never to skip the pull attempt), a base made
#      from this host's own node, haproxy, tini, redis-server and busybox by
#      scripts/swarm/make-base-image.sh, tagged tether-base:local. It also has redis-server, so
#      it is tether-redis:local too when redis:7-bookworm cannot be had (see the end).
# CA bundle: npm in the build stage must reach the npm registry. Behind an intercepting HTTPS
# proxy it needs that proxy's CA: EXTRA_CA=/path/to/ca.pem, or NODE_EXTRA_CA_CERTS, or this
# host's bundle (/etc/ssl/certs/ca-certificates.crt) is used. It is copied into a temporary
# build context (never into the work tree) and is not in the final image.
# DOCKER_HOST selects the daemon, as for docker itself.
set -euo pipefail
image="${1:?usage: scripts/build-image.sh IMAGE   (e.g. tether:1.0)}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "build-image: $*" >&2; }

base="${BASE_IMAGE:-}"
if [ -z "$base" ]; then
  official=node:20-bookworm-slim
  if docker image inspect "$official" >/dev/null 2>&1; then
    base="$official"
  elif [ "${TETHER_BUILD_PULL:-auto}" != never ] && timeout 120 docker pull --quiet "$official" >/dev/null 2>&1; then
    base="$official"
  else
    base=tether-base:local
    say "no $official here and no registry to pull it from: making $base from this host's binaries"
    "$repo/scripts/swarm/make-base-image.sh" "$base" >&2
  fi
fi
say "base image: $base"

context="$(mktemp -d "${TMPDIR:-/tmp}/tether-build.XXXXXX")"
trap 'rm -rf "$context"' EXIT
# Only what the Dockerfile copies (see .dockerignore).
(cd "$repo" && cp -r package.json package-lock.json tsconfig.json tsconfig.build.json src Dockerfile .dockerignore "$context/")
mkdir -p "$context/scripts" && cp -r "$repo/scripts/swarm" "$context/scripts/"
for ca in "${EXTRA_CA:-}" "${NODE_EXTRA_CA_CERTS:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$ca" ] && [ -f "$ca" ]; then
    cp "$ca" "$context/extra-ca.pem"
    say "CA bundle for npm in the build: $ca"
    break
  fi
done

DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --quiet --network host --build-arg "BASE_IMAGE=$base" -t "$image" "$context" >/dev/null
say "built $image"

# Redis, as tether-redis:local (the stack's default REDIS_IMAGE): the official redis:7-bookworm
# when it is here or can be pulled, else tether-base:local, which has redis-server.
redis_image=tether-redis:local
official_redis=redis:7-bookworm
if docker image inspect "$official_redis" >/dev/null 2>&1 ||
  { [ "${TETHER_BUILD_PULL:-auto}" != never ] && timeout 120 docker pull --quiet "$official_redis" >/dev/null 2>&1; }; then
  redis_from="$official_redis"
else
  redis_from=tether-base:local
  if ! docker image inspect "$redis_from" >/dev/null 2>&1; then
    say "no $official_redis here and no registry to pull it from: making $redis_from from this host's binaries"
    "$repo/scripts/swarm/make-base-image.sh" "$redis_from" >&2
  fi
fi
docker tag "$redis_from" "$redis_image"
say "Redis image: $redis_image (from $redis_from)"
