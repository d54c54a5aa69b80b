#!/usr/bin/env bash
# Builds a minimal base image from this host's own binaries, for machines that cannot pull
# from a registry (the Swarm test suite's case). The image holds what Tether's Dockerfile
# expects of an official Node image plus HAProxy: node and npm, haproxy, tini, redis-server
# and redis-cli (so the same base can run the test stack's Redis), a static busybox for
# /bin/sh, every shared library `ldd` lists, and the host's CA bundle.
#
#   scripts/swarm/make-base-image.sh IMAGE_NAME      (DOCKER_HOST selects the daemon)
#
# Layout is usr-merged (/bin, /sbin, /lib, /lib64 link into /usr), the dynamic loader is at
# /lib64/ld-linux-x86-64.so.2, users root and node (1000) exist as in the official image.
set -euo pipefail
name="${1:?usage: make-base-image.sh IMAGE_NAME}"

need() { command -v "$1" >/dev/null || { echo "make-base-image: '$1' not found on this host" >&2; exit 1; }; }
for tool in node npm haproxy redis-server redis-cli ldd docker; do need "$tool"; done
busybox="$(command -v busybox || true)"
if [ -z "$busybox" ] || ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  [ -x /bin/busybox ] && busybox=/bin/busybox
fi
[ -n "$busybox" ] || { echo "make-base-image: a static busybox is needed (apt-get install busybox-static)" >&2; exit 1; }
tini="$(command -v tini-static || command -v tini || true)"
[ -n "$tini" ] || { echo "make-base-image: tini not found (apt-get install tini)" >&2; exit 1; }

root="$(mktemp -d "${TMPDIR:-/tmp}/tether-base.XXXXXX")"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/usr/{bin,sbin,lib,lib64,local/bin,local/lib} "$root"/{etc,tmp,root,home/node,var/run,var/lib,data,dev,proc,sys}
ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp"

# Copies a file to the same path in the rootfs, resolving symlinks (/lib → /usr/lib on the host too).
put() {
  local src="$1" dest="$2"
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$src" "$root$dest"
}
# Copies an executable and every library it links to.
put_binary() {
  local src dest="$2"
  src="$(readlink -f "$1")"
  put "$src" "$dest"
  ldd "$src" 2>/dev/null | awk '/=> \//{print $3} /^\s*\/[^ ]+ \(/{print $1}' | while read -r lib; do
    local real; real="$(readlink -f "$lib")"
    # Keep the name the binary asks for (libfoo.so.1), placed under /usr/lib... (usr-merged).
    local target="${lib#/usr}"; target="/usr${target}"
    [ -e "$root$target" ] || put "$real" "$target"
  done
}

put_binary "$(command -v node)" /usr/local/bin/node
put_binary "$(command -v haproxy)" /usr/sbin/haproxy
put_binary "$(command -v redis-server)" /usr/bin/redis-server
put_binary "$(command -v redis-cli)" /usr/bin/redis-cli
put "$tini" /usr/bin/tini
put "$busybox" /usr/bin/busybox
for applet in $("$busybox" --list); do
  [ -e "$root/usr/bin/$applet" ] || ln -s busybox "$root/usr/bin/$applet"
done
# The loader must also answer at the path every binary names.
[ -e "$root/usr/lib64/ld-linux-x86-64.so.2" ] || put /lib64/ld-linux-x86-64.so.2 /usr/lib64/ld-linux-x86-64.so.2
# glibc's DNS resolution needs these at run time (dlopen'ed, so ldd does not list them).
for lib in libnss_dns.so.2 libnss_files.so.2 libresolv.so.2; do
  for dir in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu; do
    [ -e "$dir/$lib" ] && { [ -e "$root/usr/lib/x86_64-linux-gnu/$lib" ] || put "$dir/$lib" "/usr/lib/x86_64-linux-gnu/$lib"; break; }
  done
done

# npm as the official image lays it out.
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

# CA bundle: lets npm and friends work behind an intercepting HTTPS proxy, as on the host.
for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  [ -f "$bundle" ] && { put "$bundle" /etc/ssl/certs/ca-certificates.crt; break; }
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000::/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
node:x:1000:
nogroup:x:65534:
GROUP
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
chown -R 1000:1000 "$root/home/node"

tar --numeric-owner -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin' \
  -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  -c 'CMD ["node"]' \
  - "$name" >/dev/null
echo "$name"
