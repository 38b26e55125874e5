#!/bin/sh
# Post-build script of the callbox image: finishes the target tree
# before the root file system image is made.
# $1: the target directory.
set -eu

TARGET="$1"
BOARD_DIR="$(dirname "$0")"

# Mount points of the boot and data partitions (fstab).
mkdir -p "${TARGET}/boot" "${TARGET}/data"

# RAUC: the slot layout, and the operator's update CA certificate.
install -D -m 0644 "${BOARD_DIR}/rauc/system.conf" \
	"${TARGET}/etc/rauc/system.conf"
if [ -n "${CALLBOX_RAUC_KEYRING:-}" ]; then
	install -D -m 0644 "${CALLBOX_RAUC_KEYRING}" \
		"${TARGET}/etc/rauc/keyring.pem"
else
	echo "post-build.sh: CALLBOX_RAUC_KEYRING is not set;" \
		"this image will refuse every update bundle" >&2
	rm -f "${TARGET}/etc/rauc/keyring.pem"
fi
