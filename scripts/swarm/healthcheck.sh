# The image's HEALTHCHECK, run by busybox (a static binary in the image, so a check costs a
# fork of a few hundred KB, not a Node process): `busybox sh /app/bin/healthcheck.sh`.
# Reads the role from PID 1's command line (the entrypoint is `tini -s -- node /app/dist/cli.js
# <role>`) and asks that role's /healthz on loopback. Exit 0 healthy, 1 not.
#
# - control: GET :$PORT/healthz (the process answers HTTP).
# - proxy: GET the admin listener's /healthz, which HAProxy answers itself (monitor-uri): the
#   check never depends on the agent or the control plane. Before the first configuration
#   HAProxy is not running; while no configuration was ever applied (no last known good file)
#   the proxy is waiting for the control plane, and restarting it would not help: healthy.
# - demo backend: GET :$PORT/healthz. Anything else: nothing to check.
# TETHER_HEALTHCHECK_CMDLINE overrides /proc/1/cmdline (for tests).
bb=busybox
cmdline=$($bb tr '\0' ' ' < "${TETHER_HEALTHCHECK_CMDLINE:-/proc/1/cmdline}")
case "$cmdline" in
  *demo-backend.mjs*) port=${PORT:-8080}; role=demo ;;
  *cli.js\ control*) port=${PORT:-8080}; role=control ;;
  *cli.js\ proxy*) port=${TETHER_ADMIN_LISTEN:-:8404}; port=${port##*:}; role=proxy ;;
  *) exit 0 ;;
esac
# 8 s: under the HEALTHCHECK's 10 s timeout, and long enough for a node under heavy load.
# (`timeout`, not wget's -T, which crashes in Debian's static busybox 1.35.)
if $bb timeout 8 $bb wget -q -O /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then exit 0; fi
if [ "$role" = proxy ] && [ ! -e "${TETHER_STATE_DIR:-/var/lib/tether}/last-known-good.json" ]; then
  echo "healthcheck: proxy waiting for its first configuration" >&2
  exit 0
fi
echo "healthcheck: $role on :$port/healthz did not answer 200" >&2
exit 1
