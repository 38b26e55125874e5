# U-Boot script for the callbox A/B layout (compiled to boot.scr).
#
# RAUC's "uboot" backend keeps BOOT_ORDER ("A B" or "B A") and one try
# counter per slot (BOOT_A_LEFT, BOOT_B_LEFT) in the U-Boot environment
# (uboot.env on the FAT boot partition). Each boot takes one try from
# the first slot that has some left; once the system is up,
# rauc-mark-good resets that slot's counter. A slot that boots three
# times without being marked good is skipped: the box falls back to the
# other slot.

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv rootpart
for slot in ${BOOT_ORDER}; do
	if test -z "${rootpart}"; then
		if test "${slot}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
			setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
			setenv rootpart 2
			setenv rauc_slot A
		elif test "${slot}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
			setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
			setenv rootpart 3
			setenv rauc_slot B
		fi
	fi
done

if test -z "${rootpart}"; then
	# No slot has tries left: reset both and start again from A.
	setenv BOOT_A_LEFT 3
	setenv BOOT_B_LEFT 3
	saveenv
	reset
fi

saveenv

# The firmware leaves its device tree (with cmdline.txt merged into
# /chosen) at ${fdt_addr}; boot the slot's kernel with it.
setenv bootargs "console=ttyAMA0,115200 console=tty1 root=/dev/mmcblk0p${rootpart} rootfstype=ext4 ro rootwait rauc.slot=${rauc_slot} panic=10"
load mmc 0:${rootpart} ${kernel_addr_r} /boot/Image
booti ${kernel_addr_r} - ${fdt_addr}
