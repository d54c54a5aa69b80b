# Tether: one image, one CLI, several roles —  tether control | proxy | demo.
#
#   docker build -t tether .                                  # official Node base, from a registry
#   docker build --build-arg BASE_IMAGE=my-base -t tether .   # any Node 20 base (e.g. one made by
#                                                             # scripts/swarm/make-base-image.sh)
#
# Behind an intercepting HTTPS proxy, put its CA bundle at ./extra-ca.pem in the build context
# (optional; never commit it); npm in the build stage then trusts it.
#
# Roles and users: control and demo run as `node` (uid 1000). The proxy runs as `node` too and
# listens on :8080 inside the container (TETHER_PROXY_LISTEN below); publish it as 80:8080, so no
# capability is needed. Only a control plane with Swarm discovery needs root, for the Docker
# socket (root-equivalent anyway): the stack sets `user: root` on that service alone.
# PID 1 is tini (-s: also reaps when it is not PID 1, e.g. under `init: true`), so HAProxy's
# workers left over by reloads are reaped and SIGTERM reaches the agent.
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The glob makes extra-ca.pem optional: COPY only fails when nothing matches, and package.json does.
COPY package.json package-lock.json extra-ca.pe[m] ./
RUN if [ -f extra-ca.pem ]; then export NODE_EXTRA_CA_CERTS="$PWD/extra-ca.pem"; fi \
 && npm ci --no-audit --no-fund --ignore-scripts --loglevel=warn
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund --ignore-scripts --loglevel=warn \
 && test -f dist/cli.js

FROM ${BASE_IMAGE}
# HAProxy, tini and a static busybox (the health check's shell and wget) come from the base when
# it has them (the locally made base does), otherwise from Debian (the official Node images are
# Debian based).
RUN missing=""; \
    command -v haproxy >/dev/null || missing="$missing haproxy"; \
    command -v tini >/dev/null || missing="$missing tini"; \
    command -v busybox >/dev/null || missing="$missing busybox-static"; \
    if [ -n "$missing" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && mkdir -p /var/lib/tether && chown node:node /var/lib/tether
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY scripts/swarm/healthcheck.sh scripts/swarm/demo-backend.mjs ./bin/
ENV NODE_ENV=production \
    TETHER_STATE_DIR=/var/lib/tether \
    TETHER_PROXY_LISTEN=:8080 \
    TETHER_PROXY_LISTEN_TLS=:8443
USER node
EXPOSE 8080 8443 8404
# Cheap (busybox, no Node process per check) and patient: a task is replaced only after 6
# consecutive failed checks (30 s at least; each may take 10 s), so a busy node keeps its healthy
# tasks; a proxy's check asks HAProxy itself, never the control plane.
HEALTHCHECK --interval=5s --timeout=10s --start-period=60s --retries=6 CMD ["busybox", "sh", "/app/bin/healthcheck.sh"]
ENTRYPOINT ["tini", "-s", "--", "node", "/app/dist/cli.js"]
CMD ["control"]
