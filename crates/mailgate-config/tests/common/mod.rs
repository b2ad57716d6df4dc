//! Shared helpers: write a routing file into a temp dir and load it.
#![allow(dead_code)]

use std::path::PathBuf;

use mailgate_config::{ConfigErrors, Loaded, RoutingTable};

#[derive(Debug)]
pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("probe.secret"), "s3cret\n").expect("write");
        Dir { dir }
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
    pub fn load(&self, text: &str) -> Result<Loaded, ConfigErrors> {
        RoutingTable::load(&self.write("routing.yaml", text))
    }
}

pub const BASIC: &str = r#"
backends:
  mail1:
    host: 127.0.0.1
    imap_port: 10143
    pop3_port: 10110
    probe:
      user: probe@example.com
      password_file: probe.secret
  mail2:
    host: 10.0.0.2
    imap_port: 143
  mail3:
    host: mail3.internal
    pop3_port: 110
  mail4:
    host: mail4.internal
    imap_port: 143
domains:
  example.com: mail1
  Example.ORG.: mail2
  "*.example.net": mail3
  "*.deep.example.net": mail4
  bücher.example: mail2
  sub.example.net: mail1
users:
  Alice@Example.com: mail2
  bob: mail3
  z@W.example.net: mail1
default_domain: example.com
default: mail4
"#;
