//! `mailgate ctl` against several instances at once: `--admin URL,URL` (or `--admin`
//! repeated), and `--all-addresses`, which addresses every A/AAAA record of each
//! `--admin` host name on the same port (a Kubernetes headless Service, a round-robin
//! name). The command goes to every instance concurrently; the output is per instance,
//! in the order given, and the exit code is the worst: 0 all done, 1 some instance refused
//! or failed, 2 some instance could not be reached. Failed instances are named on stderr.

use std::net::{IpAddr, SocketAddr};

use super::{Command, CtlError, Target};

/// Where the addresses come from.
#[derive(Debug, Clone, Default)]
pub struct Addressing {
    /// `--admin` values (each may hold several, comma-separated); empty: the default.
    pub admins: Vec<String>,
    /// `--all-addresses`: resolve host names to every address.
    pub all_addresses: bool,
    /// `--nameserver IP:PORT`: ask this DNS server instead of the system's resolver.
    pub nameserver: Option<SocketAddr>,
}

/// Split `--admin` values at commas; blanks are dropped.
pub fn admin_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// `host:port` → (host without brackets, port). The address is already checked by
/// [`super::parse_addr`].
fn split_host(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port.parse().ok()?))
}

fn socket_text(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// Every address of `host` (A and AAAA), in the resolver's order, without duplicates.
async fn resolve_all(
    host: &str,
    port: u16,
    nameserver: Option<SocketAddr>,
) -> Result<Vec<IpAddr>, String> {
    let mut ips: Vec<IpAddr> = match nameserver {
        Some(ns) => {
            use hickory_resolver::TokioResolver;
            use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
            use hickory_resolver::net::runtime::TokioRuntimeProvider;
            let mut server = NameServerConfig::udp_and_tcp(ns.ip());
            for c in &mut server.connections {
                c.port = ns.port();
            }
            let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
            let mut builder =
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            let resolver = builder.build().map_err(|e| e.to_string())?;
            let fqdn = if host.ends_with('.') {
                host.to_string()
            } else {
                format!("{host}.")
            };
            let answer = resolver
                .lookup_ip(fqdn.as_str())
                .await
                .map_err(|e| e.to_string())?;
            answer.iter().collect()
        }
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| e.to_string())?
            .map(|a| a.ip())
            .collect(),
    };
    let mut seen = std::collections::HashSet::new();
    ips.retain(|ip| seen.insert(*ip));
    if ips.is_empty() {
        return Err("the name has no A or AAAA record".into());
    }
    Ok(ips)
}

/// The instances to address: each `--admin` address, and with `all_addresses` each
/// address of each host name; all with the same token.
pub async fn targets(base: &Target, how: &Addressing) -> Result<Vec<Target>, CtlError> {
    let mut addrs: Vec<String> = Vec::new();
    let list = admin_list(&how.admins);
    let given: Vec<String> = if list.is_empty() {
        vec![base.addr.clone()]
    } else {
        list.iter()
            .map(|a| super::parse_addr(a))
            .collect::<Result<_, _>>()?
    };
    for addr in given {
        let Some((host, port)) = split_host(&addr) else {
            return Err(CtlError::Address(addr));
        };
        if !how.all_addresses || host.parse::<IpAddr>().is_ok() {
            addrs.push(addr);
            continue;
        }
        let ips = resolve_all(host, port, how.nameserver)
            .await
            .map_err(|reason| CtlError::Connect {
                addr: addr.clone(),
                reason: format!("cannot resolve {host}: {reason}"),
            })?;
        addrs.extend(ips.into_iter().map(|ip| socket_text(ip, port)));
    }
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(a.clone()));
    Ok(addrs
        .into_iter()
        .map(|addr| Target {
            addr,
            token: base.token.clone(),
        })
        .collect())
}

/// What one instance answered.
#[derive(Debug)]
pub enum Answer {
    /// Done: the output.
    Done(String),
    /// The server refused or failed: why.
    Refused(String),
    /// Not reached or not understood.
    Unreachable(String),
}

impl Answer {
    fn code(&self) -> u8 {
        match self {
            Answer::Done(_) => 0,
            Answer::Refused(_) => 1,
            Answer::Unreachable(_) => 2,
        }
    }
}

/// Send `command` to every target concurrently; answers in the targets' order.
pub async fn send_all(targets: &[Target], command: &Command) -> Vec<Answer> {
    let handles: Vec<_> = targets
        .iter()
        .cloned()
        .map(|t| {
            let command = command.clone();
            tokio::spawn(async move {
                match super::call(&t, &command).await {
                    Ok(Ok(out)) => Answer::Done(out),
                    Ok(Err(why)) => Answer::Refused(why),
                    Err(e) => Answer::Unreachable(e.to_string()),
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .unwrap_or_else(|e| Answer::Unreachable(e.to_string())),
        );
    }
    out
}

/// The report for several instances: (stdout, stderr, exit code). One-line outputs get
/// the instance's address in front; longer ones (status tables) a `== ADDR ==` header.
pub fn report(targets: &[Target], answers: &[Answer]) -> (String, String, u8) {
    let mut out = String::new();
    let mut err = String::new();
    let mut failed = Vec::new();
    for (t, a) in targets.iter().zip(answers) {
        match a {
            Answer::Done(text) if text.trim_end().lines().count() <= 1 => {
                out.push_str(&format!("{}: {}\n", t.addr, text.trim_end()));
            }
            Answer::Done(text) => {
                out.push_str(&format!("== {} ==\n{text}", t.addr));
            }
            Answer::Refused(why) | Answer::Unreachable(why) => {
                err.push_str(&format!("mailgate ctl: {}: {why}\n", t.addr));
                failed.push(t.addr.as_str());
            }
        }
    }
    let code = answers.iter().map(Answer::code).max().unwrap_or(0);
    if !failed.is_empty() {
        err.push_str(&format!(
            "mailgate ctl: {} of {} instances failed: {}\n",
            failed.len(),
            targets.len(),
            failed.join(", ")
        ));
    }
    (out, err, code)
}

/// Whether a command may go to several instances at once.
pub fn fans_out(command: &Command) -> bool {
    matches!(
        command,
        Command::Status { .. }
            | Command::Drain { .. }
            | Command::Undrain(_)
            | Command::Kick { .. }
            | Command::Reload
    )
}

/// Run `command` against the instances `how` names; prints and returns the exit code
/// (2 also when the addresses cannot be worked out).
pub fn run(base: &Target, how: &Addressing, command: &Command) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailgate ctl: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let targets = match rt.block_on(targets(base, how)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mailgate ctl: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if targets.len() == 1 && !how.all_addresses {
        // One instance: exactly the single-instance output.
        return match super::run(&targets[0], command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("mailgate ctl: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if !fans_out(command) {
        eprintln!(
            "mailgate ctl: this command addresses one instance; {} given",
            targets.len()
        );
        return std::process::ExitCode::from(2);
    }
    let answers = rt.block_on(send_all(&targets, command));
    let (out, err, code) = report(&targets, &answers);
    print!("{out}");
    eprint!("{err}");
    std::process::ExitCode::from(code)
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
