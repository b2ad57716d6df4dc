//! Tests of `capability.rs`.

use super::*;

#[test]
fn imap_lists_keep_atoms_and_mechanisms() {
    let c = Capabilities::from_imap(
        b"IMAP4rev1 sasl-ir ID AUTH=PLAIN auth=cram-md5 bad\x01atom STARTTLS] text",
    );
    assert!(c.has("SASL-IR") && c.has("id") && c.has("AUTH=CRAM-MD5"));
    assert!(c.has_mechanism("cram-md5") && c.has_mechanism("PLAIN"));
    assert!(!c.has("TEXT") && !c.names().any(|n| n.contains('\u{1}')));
    assert_eq!(c.mechanisms().collect::<Vec<_>>(), ["CRAM-MD5", "PLAIN"]);
    let long = format!("IMAP4rev1 {}", "X".repeat(MAX_NAME + 1));
    assert_eq!(Capabilities::from_imap(long.as_bytes()).names().count(), 1);
    let many: Vec<String> = (0..500).map(|i| format!("C{i}")).collect();
    let c = Capabilities::from_imap(many.join(" ").as_bytes());
    assert_eq!(c.names().count(), MAX_CAPABILITIES);
}

#[test]
fn pop3_lines_keep_tags_and_sasl_mechanisms() {
    let c = Capabilities::from_pop3([
        &b"TOP"[..],
        b"SASL PLAIN LOGIN",
        b"user",
        b"",
        b"IMPLEMENTATION Dovecot 2.3",
    ]);
    assert_eq!(
        c.names().collect::<Vec<_>>(),
        ["IMPLEMENTATION", "SASL", "TOP", "USER"]
    );
    assert_eq!(c.mechanisms().collect::<Vec<_>>(), ["LOGIN", "PLAIN"]);
}

#[test]
fn pop3_capa_answers() {
    let full = b"+OK\r\nTOP\r\nUIDL\r\n.\r\n+OK 1 2\r\n";
    for cut in 0..full.len() - 9 {
        assert_eq!(
            read_pop3_capa(&full[..cut], 100, 10),
            CapaRead::Need,
            "{cut}"
        );
    }
    let CapaRead::Done { caps, consumed } = read_pop3_capa(full, 100, 10) else {
        panic!("complete")
    };
    assert_eq!(consumed, full.len() - 9);
    assert!(caps.expect("+OK").has("UIDL"));
    assert_eq!(
        read_pop3_capa(b"-ERR no\r\nrest", 100, 10),
        CapaRead::Done {
            caps: None,
            consumed: 9
        }
    );
    assert_eq!(read_pop3_capa(b"* OK\r\n", 100, 10), CapaRead::Invalid);
    assert_eq!(
        read_pop3_capa(b"+OK\r\nA\r\nB\r\n", 100, 1),
        CapaRead::Invalid
    );
    assert_eq!(read_pop3_capa(&[b'x'; 101], 100, 1), CapaRead::Invalid);
}

#[test]
fn login_replies_carry_post_login_lists() {
    let code = BackendReply {
        untagged: Vec::new(),
        status: b"OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in".to_vec(),
    };
    let c = Capabilities::from_imap_login(&code).expect("code");
    assert!(c.has("MOVE") && !c.has("LOGGED"));
    let untagged = BackendReply {
        untagged: b"* OK hi\r\n* CAPABILITY IMAP4rev1 QUOTA\r\n".to_vec(),
        status: b"OK Logged in".to_vec(),
    };
    assert!(
        Capabilities::from_imap_login(&untagged)
            .expect("line")
            .has("QUOTA")
    );
    let none = BackendReply {
        untagged: Vec::new(),
        status: b"OK Logged in".to_vec(),
    };
    assert_eq!(Capabilities::from_imap_login(&none), None);
}

#[test]
fn the_advertised_set_is_the_intersection() {
    let dovecot = Capabilities::from_imap(b"IMAP4rev1 SASL-IR ID AUTH=PLAIN AUTH=LOGIN");
    let no_ir = Capabilities::from_imap(b"IMAP4rev1 ID AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2");
    let oauth = Capabilities::from_imap(b"IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER");
    let all = Advertised::default();
    assert_eq!(all.mechanism_names(false), ["PLAIN", "LOGIN"]);
    assert_eq!(
        all.mechanism_names(true),
        ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"]
    );
    let a = all
        .narrow(Protocol::Imap, &dovecot)
        .narrow(Protocol::Imap, &no_ir);
    assert!(!a.sasl_ir && a.id);
    assert_eq!(a.mechanism_names(true), ["PLAIN", "LOGIN"]);
    let b = all
        .narrow(Protocol::Imap, &no_ir)
        .narrow(Protocol::Imap, &oauth);
    // PLAIN/LOGIN become a LOGIN command, which a backend without LOGINDISABLED takes.
    assert_eq!(b.mechanism_names(true), ["PLAIN", "LOGIN", "XOAUTH2"]);
    assert!(!b.id && !b.sasl_ir);
    let disabled = Capabilities::from_imap(b"IMAP4rev1 LOGINDISABLED AUTH=XOAUTH2");
    let c = all.narrow(Protocol::Imap, &disabled);
    assert_eq!(c.mechanism_names(true), ["XOAUTH2"]);
    // Order does not matter.
    assert_eq!(
        all.narrow(Protocol::Imap, &oauth)
            .narrow(Protocol::Imap, &no_ir),
        b
    );
}

#[test]
fn pop3_intersection() {
    let plain = Capabilities::from_pop3([&b"USER"[..], b"SASL PLAIN"]);
    let oauth = Capabilities::from_pop3([&b"SASL PLAIN XOAUTH2"[..]]);
    let a = Advertised::default().narrow(Protocol::Pop3, &oauth);
    assert_eq!(a.mechanism_names(true), ["PLAIN", "LOGIN", "XOAUTH2"]);
    // SASL-IR and ID are IMAP's; POP3 lists leave them alone.
    assert!(a.sasl_ir && a.id);
    let b = a.narrow(Protocol::Pop3, &plain);
    assert_eq!(b.mechanism_names(true), ["PLAIN", "LOGIN"]);
    // An RFC 1939-only server (no CAPA) takes USER/PASS.
    let bare = Advertised::default().narrow(Protocol::Pop3, &Capabilities::default());
    assert_eq!(bare.mechanism_names(true), ["PLAIN", "LOGIN"]);
}
