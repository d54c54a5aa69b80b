#!/usr/bin/env bash
# Builds HAProxy 3.0 LTS (Debian 13's version, supported to 2029) from Debian's source package,
# for running the data-plane suite on it beside Debian 12's HAProxy 2.6.
#
#   bash scripts/build-haproxy-3.0.sh DIR     # prints DIR/haproxy's version; DIR/haproxy is the binary
#
# Cached: a DIR that already holds a working 3.0 binary is reused. Needs root (apt) or sudo.
# About 3 minutes on 2 idle cores (run at low priority, so it can overlap other work).
set -euo pipefail
out="${1:?usage: build-haproxy-3.0.sh DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
version() { local v; v="$("$out/haproxy" -v 2>/dev/null)" || return 1; printf '%s\n' "${v%%$'\n'*}"; }
if version | grep '^HAProxy version 3\.0\.'; then exit 0; fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
# Debian 13's sources, from the same mirror apt already uses for Debian 12.
uri="$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}' || true)"
uri="${uri:-http://deb.debian.org/debian}"
echo "deb-src $uri trixie main" | $sudo tee /etc/apt/sources.list.d/tether-trixie-src.list >/dev/null
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends make gcc libc6-dev libpcre2-dev liblua5.4-dev libssl-dev zlib1g-dev >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# The .dsc and the Debian patches may be missing on a mirror; the upstream tarball is all a build needs.
apt-get source --download-only haproxy >/dev/null 2>&1 || true
tarball="$(ls haproxy_3.0.*.orig.tar.gz 2>/dev/null | sort -V | tail -1)"
[ -n "$tarball" ] || { echo "build-haproxy-3.0: no haproxy_3.0.*.orig.tar.gz from Debian 13's sources ($uri)" >&2; exit 1; }
tar xzf "$tarball"
cd haproxy-3.0.*/
nice -n 10 make -j"$(nproc)" TARGET=linux-glibc USE_OPENSSL=1 USE_PCRE2=1 USE_PCRE2_JIT=1 USE_LUA=1 \
  LUA_INC=/usr/include/lua5.4 USE_PROMEX=1 USE_ZLIB=1 >make.log 2>&1 || { tail -40 make.log >&2; exit 1; }
install -m 0755 haproxy "$out/haproxy"
version
