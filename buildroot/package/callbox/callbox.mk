################################################################################
#
# callbox
#
################################################################################

# The package is this repository itself: the BR2_EXTERNAL tree lives in
# its buildroot/ directory, so the workspace root is one level up.
CALLBOX_VERSION = local
CALLBOX_SITE = $(BR2_EXTERNAL_CALLBOX_PATH)/..
CALLBOX_SITE_METHOD = local
CALLBOX_LICENSE = Proprietary
CALLBOX_DEPENDENCIES = host-pkgconf alsa-lib

# Firmware of our own: "make legal-info" lists it but does not copy
# its source.
CALLBOX_REDISTRIBUTE = NO

# Do not rsync cargo's build output, the image tree, an old vendor
# directory or the workspace's .cargo/ (cross linkers and qemu runners
# for developer machines; Buildroot sets target and linker through the
# environment) into the build directory. Patterns are anchored at the
# workspace root.
CALLBOX_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /target --exclude /buildroot --exclude /VENDOR \
	--exclude /.cargo

# Vendoring. For a package with a downloaded archive, the cargo
# infrastructure runs "cargo vendor" as a download post-process
# (support/download/cargo-post-process), so the archive in DL_DIR
# already holds every crate and the build runs with --offline. A
# "local" site is not downloaded (Buildroot rsyncs it into the build
# directory), so that post-process never runs for it. This hook does
# the same before configure, when host-rustc is built: it vendors the
# crates pinned by Cargo.lock into VENDOR/ with host-rustc's cargo and
# writes the source replacement that cargo vendor prints to the build
# directory's .cargo/config.toml. This step needs network access to
# crates.io (crates are cached in DL_DIR/br-cargo-home); build and
# install are offline.
define CALLBOX_VENDOR_CRATES
	mkdir -p $(@D)/.cargo
	cd $(@D) && \
		$(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		cargo vendor --locked --versioned-dirs VENDOR \
		> $(@D)/.cargo/config.toml
endef
CALLBOX_PRE_CONFIGURE_HOOKS += CALLBOX_VENDOR_CRATES

# Buildroot's pkg-config wrapper already answers for the staging
# sysroot (alsa-lib), so let the pkg-config crate use it when
# cross-compiling.
CALLBOX_CARGO_ENV = PKG_CONFIG_ALLOW_CROSS=1

# Size options the workspace's .cargo/config.toml sets for developer builds
# (this build directory has no copy of it): the bundled SQLite without the
# extensions the box never uses, and LLVM's machine outliner only where it
# saves at least 40 bytes (each outlined function costs ~28 bytes of unwind
# tables). Keep both lists in step with .cargo/config.toml.
CALLBOX_CARGO_ENV += \
	LIBSQLITE3_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_ENABLE_STAT4 -USQLITE_SOUNDEX -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_JSON -DSQLITE_OMIT_DEPRECATED -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_OMIT_PROGRESS_CALLBACK"
ifeq ($(BR2_aarch64),y)
CALLBOX_CARGO_ENV += \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C llvm-args=-outliner-benefit-threshold=40"
endif

# The generic build step passes --release, which cargo refuses together
# with --profile, so build the daemon with our own command. The
# firmware profile (workspace Cargo.toml) is size-optimised, fat LTO,
# stripped. The box runs the analog line backend: ALSA (alsa-lib from
# staging) and Raspberry Pi GPIO (docs/hardware.md).
define CALLBOX_BUILD_CMDS
	cd $(@D) && \
	$(TARGET_MAKE_ENV) \
		$(TARGET_CONFIGURE_OPTS) \
		$(PKG_CARGO_ENV) \
		$(CALLBOX_CARGO_ENV) \
		cargo build \
			--offline \
			--locked \
			--manifest-path Cargo.toml \
			-p callbox-firmware \
			--bin callboxd \
			--features analog \
			--profile firmware
endef

# cargo install would rebuild with the release profile; install the
# binary built above instead.
define CALLBOX_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/firmware/callboxd \
		$(TARGET_DIR)/usr/bin/callboxd
endef

$(eval $(cargo-package))
