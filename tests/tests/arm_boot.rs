//! System test: the aarch64 `callboxd` boots on an arm64 Linux kernel.
//!
//! Debian's arm64 kernel runs in `qemu-system-aarch64 -M virt` with an
//! initramfs this test writes (cpio newc, in Rust): a static busybox as the
//! shell for `/init`, the aarch64 `callboxd` with the cross glibc it links
//! against, a site config and a sim scenario. `/init` plays the scenario
//! with `--fast --until-idle`, prints `callboxd records --json` between two
//! markers on the console and powers the machine off; the test reads the
//! console and checks the records.
//!
//! `scripts/test-all` fetches the kernel and busybox (`apt-get download`,
//! arm64 apt architecture) into `target/arm-boot/` and builds the aarch64
//! binary; without them the test says what is missing and skips.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callbox_tests::Site;
use serde_json::Value;

/// The whole boot, scenario and power-off must fit in this.
const BOOT_LIMIT: Duration = Duration::from_secs(110);
const BEGIN: &str = "=====CALLBOX RECORDS BEGIN=====";
const END: &str = "=====CALLBOX RECORDS END=====";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// The first file in `dir` whose name starts with `prefix`.
fn find(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
}

/// A cpio "newc" archive, the format the kernel unpacks as initramfs.
#[derive(Debug, Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.buf.extend_from_slice(header.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | mode, (0, 0), data);
    }

    fn copy(&mut self, name: &str, mode: u32, from: &Path) {
        let data =
            std::fs::read(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
        self.file(name, mode, &data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs tmp /tmp
export PATH=/bin LD_LIBRARY_PATH=/lib HOME=/
echo "callbox-boot: $(/bin/busybox uname -m) $(/bin/busybox uname -r)"
/callboxd run --fast --until-idle --config /site/site.toml --data /data --scenario /site/calls.toml
echo "callbox-boot: run exit $?"
echo "=====CALLBOX RECORDS BEGIN====="
/callboxd records --data /data --json
echo "=====CALLBOX RECORDS END====="
/bin/busybox poweroff -f
"#;

#[test]
fn the_aarch64_box_boots_an_arm64_kernel_plays_a_scenario_and_reports_its_records() {
    let boot = target_dir().join("arm-boot");
    let kernel = find(&boot.join("kernel/boot"), "vmlinuz-");
    let busybox = boot.join("busybox/bin/busybox");
    let callboxd = std::env::var_os("CALLBOXD_AARCH64").map_or_else(
        || target_dir().join("aarch64-unknown-linux-gnu/debug/callboxd"),
        PathBuf::from,
    );
    let sysroot = Path::new("/usr/aarch64-linux-gnu/lib");
    let qemu_ok = Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing: Vec<String> = [
        (
            kernel.is_some(),
            format!("{}/kernel/boot/vmlinuz-*", boot.display()),
        ),
        (busybox.is_file(), busybox.display().to_string()),
        (callboxd.is_file(), callboxd.display().to_string()),
        (sysroot.is_dir(), sysroot.display().to_string()),
        (qemu_ok, "qemu-system-aarch64".into()),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| what)
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "arm_boot: SKIPPED, missing {} (scripts/test-all provides them)",
            missing.join(", ")
        );
        return;
    }
    let kernel = kernel.unwrap();

    // Two callers hear the greeting; a third calls a trunk not configured
    // for inbound and is rejected.
    let site = Site::new(2, 0, 500, "lines = [\"trunk-1\"]");
    let scenario = "[[call]]\nline = \"trunk-1\"\nfrom = \"5551\"\n\n\
                    [[call]]\nline = \"trunk-1\"\nat = \"20s\"\nfrom = \"5552\"\n\n\
                    [[call]]\nline = \"trunk-2\"\nat = \"40s\"\nfrom = \"5553\"\n";

    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "data",
        "site",
        "site/prompts",
    ] {
        cpio.dir(d);
    }
    // The console init's output goes to, before devtmpfs is mounted.
    cpio.entry("dev/console", 0o020_600, (5, 1), &[]);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.copy("bin/busybox", 0o755, &busybox);
    // The debug build carries hundreds of MB of debug info: strip a copy so
    // the initramfs fits the guest's memory.
    let stripped = site.dir.path().join("callboxd.stripped");
    let strip = Command::new("aarch64-linux-gnu-strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&callboxd)
        .status()
        .expect("aarch64-linux-gnu-strip (binutils-aarch64-linux-gnu) runs");
    assert!(strip.success(), "aarch64-linux-gnu-strip failed");
    cpio.copy("callboxd", 0o755, &stripped);
    for lib in [
        "ld-linux-aarch64.so.1",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
    ] {
        cpio.copy(&format!("lib/{lib}"), 0o755, &sysroot.join(lib));
    }
    // Built with the analog backend, the daemon links alsa-lib (from the
    // arm64 apt architecture; the image ships it too).
    let needed = Command::new("aarch64-linux-gnu-readelf")
        .args(["-d"])
        .arg(&stripped)
        .output()
        .expect("aarch64-linux-gnu-readelf runs");
    if String::from_utf8_lossy(&needed.stdout).contains("[libasound.so.2]") {
        cpio.copy(
            "lib/libasound.so.2",
            0o755,
            Path::new("/usr/lib/aarch64-linux-gnu/libasound.so.2"),
        );
    }
    cpio.copy("site/site.toml", 0o644, &site.config());
    cpio.copy(
        "site/prompts/greeting.wav",
        0o644,
        &site.dir.path().join("prompts/greeting.wav"),
    );
    cpio.file("site/calls.toml", 0o644, scenario.as_bytes());
    let initrd = site.dir.path().join("initramfs.cpio");
    std::fs::write(&initrd, cpio.finish()).unwrap();

    let started = Instant::now();
    let mut child = Command::new("qemu-system-aarch64")
        .args(["-M", "virt", "-cpu", "cortex-a72", "-m", "512", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-monitor", "none"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyAMA0 rdinit=/init quiet panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-aarch64 starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > BOOT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let out = reader.join().unwrap();
            panic!(
                "the box did not power off within {BOOT_LIMIT:?}; console:\n{}",
                String::from_utf8_lossy(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let console = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
    eprintln!(
        "arm_boot: booted, ran and powered off in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let lines: Vec<&str> = console.lines().collect();
    let begin = lines.iter().position(|l| l.trim() == BEGIN);
    let end = lines.iter().position(|l| l.trim() == END);
    let (Some(begin), Some(end)) = (begin, end) else {
        panic!("no records on the console:\n{console}");
    };
    assert!(
        console.contains("callbox-boot: aarch64") && console.contains("callbox-boot: run exit 0"),
        "{console}"
    );
    let recs: Vec<Value> = lines[begin + 1..end]
        .iter()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l.trim()).unwrap_or_else(|e| panic!("{e}: {l}\n{console}")))
        .collect();
    eprintln!("{}", lines[begin..=end].join("\n"));
    assert_eq!(recs.len(), 3, "{console}");
    let by = |caller: &str| callbox_tests::by_caller(&recs, caller);
    for caller in ["5551", "5552"] {
        assert_eq!(by(caller)["direction"], "inbound", "{console}");
        assert_eq!(by(caller)["trunk_line"], "trunk-1", "{console}");
        assert_ne!(by(caller)["disposition"], "rejected", "{console}");
    }
    assert_eq!(by("5553")["disposition"], "rejected", "{console}");
    assert_eq!(by("5553")["hangup_cause"], "busy", "{console}");
}
