#!/bin/sh
# Post-image script of the callbox image: lays out the SD card image
# (boot, rootA, rootB, data) with genimage and, when the operator's
# signing key is given, makes a RAUC update bundle of the root file
# system.
# $1: the images directory. Runs from the Buildroot top directory.
set -eu

BINARIES_DIR="$1"
BOARD_DIR="$(dirname "$0")"
GENIMAGE_CFG="${BINARIES_DIR}/genimage.cfg"

# Every file the boot partition holds: the firmware (start4.elf,
# fixup4.dat, config.txt, cmdline.txt, overlays/), the device trees,
# U-Boot and its script. The kernel lives in each root file system
# (/boot/Image) so that an update replaces it with the rest.
list="${BINARIES_DIR}/boot-files.txt"
: > "${list}"
for f in "${BINARIES_DIR}"/rpi-firmware/* "${BINARIES_DIR}"/*.dtb \
	"${BINARIES_DIR}/u-boot.bin" "${BINARIES_DIR}/boot.scr"; do
	[ -e "${f}" ] || continue
	echo "${f#"${BINARIES_DIR}"/}" >> "${list}"
done

# genimage wants a comma between the entries, none after the last.
awk -v list="${list}" '
	/#BOOT_FILES#/ {
		n = 0
		while ((getline name < list) > 0) {
			if (n++) printf ",\n"
			printf "\t\t\t\"%s\"", name
		}
		printf "\n"
		next
	}
	{ print }
' "${BOARD_DIR}/genimage.cfg" > "${GENIMAGE_CFG}"

support/scripts/genimage.sh -c "${GENIMAGE_CFG}"

# Update bundle, signed with the operator's key (docs/image.md).
if [ -n "${CALLBOX_RAUC_KEY:-}" ] && [ -n "${CALLBOX_RAUC_CERT:-}" ]; then
	bundle_dir="${BINARIES_DIR}/rauc-bundle"
	rm -rf "${bundle_dir}" "${BINARIES_DIR}/callbox-update.raucb"
	mkdir -p "${bundle_dir}"
	cp "${BINARIES_DIR}/rootfs.ext4" "${bundle_dir}/rootfs.ext4"
	cat > "${bundle_dir}/manifest.raucm" <<MANIFEST
[update]
compatible=callbox-rpi4-64
version=$(date -u +%Y%m%d%H%M%S)

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
	"${HOST_DIR}/bin/rauc" bundle \
		--cert="${CALLBOX_RAUC_CERT}" \
		--key="${CALLBOX_RAUC_KEY}" \
		"${bundle_dir}" "${BINARIES_DIR}/callbox-update.raucb"
	rm -rf "${bundle_dir}"
fi
