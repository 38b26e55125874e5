//! SIP over TLS toward a carrier, end to end, the carrier's certificate
//! from a CA the box trusts by `tls_ca`: the real daemon places a call on a
//! trunk with `transport = "tls"` to baresip acting as the carrier, and a
//! trunk registers over TLS to another callbox as its registrar. (An
//! agent's phone over TLS is in sip_phones.rs.)

use std::time::Duration;

use callbox_tests::sip::{
    Daemon, Phone, add_sip_keys, best_match, carrier_line, code_job, ended, free_tcp_port,
    free_udp_port, require_peers, sip_site, system_prompt,
};

#[test]
fn a_trunk_over_tls_calls_out_with_srtp_and_the_callee_hears_the_code() {
    require_peers();
    let sip_port = free_udp_port();
    let box_tls = free_tcp_port();
    // baresip listens for TLS one port above its `sip_listen`.
    let carrier_tls = free_tcp_port();
    // The carrier's certificate, from a CA the box is told to trust.
    let certs = tempfile::tempdir().unwrap();
    let pki = callbox_tests::mqtt::Pki::new(certs.path());
    let site = tls_site(
        sip_port,
        box_tls,
        &format!("tls_ca = \"{}\"\n", pki.ca.display()),
        &carrier_line(
            carrier_tls,
            ", transport = \"tls\", caller_id = \"4008001234\", keepalive = \"off\"",
        ),
        &code_job("verify-tls", "2s"),
    );
    let both = site.dir.path().join("carrier.pem");
    std::fs::write(
        &both,
        std::fs::read_to_string(&pki.server.cert).unwrap()
            + &std::fs::read_to_string(&pki.server.key).unwrap(),
    )
    .unwrap();
    callbox_tests::write_tone_hz(&site.dir.path().join("quiet.wav"), 1000.0, 60_000);
    let mut callee = Phone::with_config(
        &site.dir.path().join("callee"),
        "<sip:13700000001@127.0.0.1;transport=tls>;regint=0;answermode=auto;audio_codecs=PCMA;mediaenc=srtp-mand",
        carrier_tls - 1,
        &site.dir.path().join("quiet.wav"),
        &format!("module srtp.so\nsip_certificate {}\n", both.display()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let recs = ended(&site, &daemon, 1, Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(500));
    callee.stop();
    let log = daemon.stop();
    let callee_log = std::fs::read_to_string(callee.dir.join("baresip.log")).unwrap_or_default();
    let r = &recs[0];
    assert_eq!(r["direction"], "outbound", "{r}\n{log}");
    assert_eq!(r["outcome"], "code_said", "{r}\n{log}\n{callee_log}");
    assert!(log.contains("SRTP"), "no SRTP on the call:\n{log}");
    // The first digit of the code, through TLS signalling and SRTP media.
    let heard = callee.heard();
    let (_, c) = best_match(&heard, &system_prompt("digit-4"));
    assert!(
        c > 0.8,
        "the callee did not hear the code (best match {c:.2})\n{callee_log}"
    );
}

/// A box with `[sip]` on `sip_port` and TLS on `tls_port`, the `[sip]`
/// extras `tls`, the lines `lines` and, after `[inbound]`, `rest`.
fn tls_site(
    sip_port: u16,
    tls_port: u16,
    tls: &str,
    lines: &str,
    rest: &str,
) -> callbox_tests::Site {
    let site = sip_site("sip", sip_port, 10, lines, rest);
    add_sip_keys(
        &site,
        &format!("tls_listen = \"127.0.0.1:{tls_port}\"\n{tls}"),
    );
    site
}

#[test]
fn a_trunk_registers_over_tls_to_a_registrar_whose_certificate_it_checks() {
    require_peers();
    // The registrar: another callbox, whose phone account `trunkuser` the
    // first box's trunk registers as, over TLS with the registrar's
    // certificate from a CA the trunk's box trusts.
    let (reg_sip, reg_tls) = (free_udp_port(), free_tcp_port());
    let dir = tempfile::tempdir().unwrap();
    let pki = callbox_tests::mqtt::Pki::new(&dir.path().join("pki"));
    let registrar = tls_site(
        reg_sip,
        reg_tls,
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            pki.server.cert.display(),
            pki.server.key.display()
        ),
        &format!(
            "[[line]]\nid = \"branch\"\nkind = \"station\"\nsip = {{ username = \"trunkuser\", password = \"trunk-pass-77\" }}\n\n{}",
            carrier_line(9, ", keepalive = \"off\"")
        ),
        "",
    );
    let (box_sip, box_tls) = (free_udp_port(), free_tcp_port());
    let branch = tls_site(
        box_sip,
        box_tls,
        &format!("tls_ca = \"{}\"\n", pki.ca.display()),
        &carrier_line(
            reg_tls,
            ", transport = \"tls\", username = \"trunkuser\", password = \"trunk-pass-77\", register = true",
        ),
        "",
    );
    let reg = Daemon::start(&registrar.config(), &registrar.data(), reg_sip);
    reg.wait_log("SIP listening (TLS)", Duration::from_secs(10));
    let daemon = Daemon::start(&branch.config(), &branch.data(), box_sip);
    daemon.wait_log("trunk registered", Duration::from_secs(20));
    reg.wait_log("phone registered", Duration::from_secs(5));
    let log = daemon.stop();
    let reg_log = reg.stop();
    assert!(!log.contains("registration failed"), "{log}");
    // The registration came over TLS: from the trunk's TLS connection,
    // not from the box's UDP port, where its SIP over UDP comes from.
    let line = reg_log
        .lines()
        .find(|l| l.contains("phone registered") && l.contains("line=branch"))
        .unwrap_or_else(|| panic!("{reg_log}"));
    let source = line
        .split("source=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        source.starts_with("127.0.0.1:") && source != format!("127.0.0.1:{box_sip}"),
        "{line}"
    );
}
