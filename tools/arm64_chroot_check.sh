#!/usr/bin/env bash
# Run tools/arm64_check.py on aarch64 from an x86-64 host: inside a Debian arm64 root under qemu
# user-mode emulation, built by shared/tools/arm64_chroot.sh. Needs root. Correctness only:
# emulation is 10-50x slower than native, so no timing from it means anything.
#
#   sudo tools/arm64_chroot_check.sh [arm64_check.py options]     e.g. --no-tests
#
# ARM64_ROOT: the chroot (default ~/.cache/arm64root); CARN_SHARED: the shared data (default
# ../shared). The committed checkout is synced to ROOT/opt/carn (its .venv is kept between runs),
# the shared data is bind-mounted read-only beside it, Core ML and LiteRT artifacts exported on
# this host (aarch64 cannot write them) are handed in to be verified there, and the report comes
# back to ./arm64-check/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${ARM64_ROOT:-$HOME/.cache/arm64root}
shared=$(cd "${CARN_SHARED:-$repo/../shared}" && pwd)
[ "$(id -u)" = 0 ] || { echo "arm64_chroot_check: run as root (chroot and mounts need it)" >&2; exit 2; }
[ -x "$shared/tools/arm64_chroot.sh" ] || [ -f "$shared/tools/arm64_chroot.sh" ] \
  || { echo "arm64_chroot_check: $shared/tools/arm64_chroot.sh not found; set CARN_SHARED" >&2; exit 2; }

bash "$shared/tools/arm64_chroot.sh" "$root"

# The committed tree (what CI and users get), not the working tree's uncommitted edits.
if [ -d "$root/opt/carn/.git" ]; then
  git -C "$root/opt/carn" fetch -q "$repo" HEAD && git -C "$root/opt/carn" reset -q --hard FETCH_HEAD
else
  mkdir -p "$root/opt" && git clone -q "$repo" "$root/opt/carn"
fi
mkdir -p "$root/opt/shared"
if ! mountpoint -q "$root/opt/shared"; then
  mount --bind -o ro "$shared" "$root/opt/shared"
  trap 'umount "$root/opt/shared" 2>/dev/null || true' EXIT
fi

# Artifacts this platform may not be able to write (Core ML, LiteRT), made here on x86-64 for the
# runtimes there to verify.
extra=()
if [ -x "$repo/.venv/bin/carn-export" ]; then
  rm -rf "$root/opt/host-artifacts"
  for target in coreml litert; do
    "$repo/.venv/bin/carn-export" --target "$target" --scale 2 --shape 24x32 --out "$root/opt/host-artifacts" >/dev/null
  done
  for artifact in "$root"/opt/host-artifacts/*.mlpackage "$root"/opt/host-artifacts/*.tflite; do
    extra+=(--verify "/opt/host-artifacts/$(basename "$artifact")")
  done
else
  echo "arm64_chroot_check: no $repo/.venv here; artifacts made elsewhere are not verified" >&2
fi

rc=0
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 CARN_SHARED=/opt/shared \
  python3 /opt/carn/tools/arm64_check.py --out /opt/arm64-check "${extra[@]}" "$@" || rc=$?
rm -rf "$repo/arm64-check" && cp -r "$root/opt/arm64-check" "$repo/arm64-check"
echo "report: $repo/arm64-check/summary.md (exit $rc)"
exit $rc
