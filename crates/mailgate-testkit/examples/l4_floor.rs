//! The floor of a login through any proxy on this machine: the least a tokio program can do
//! with one client session — accept, connect to the backend, copy both ways until either
//! side closes — with no protocol, no logging and no metrics. Its CPU time per session
//! (`mailgate-load logins` through it, `/proc/PID/stat`) is what two TCP connections and
//! tokio's scheduling cost here, the number mailgate's plain login is compared with
//! (docs/performance.md). A measuring tool, not part of the product.
//!
//! `cargo run --release -p mailgate-testkit --example l4_floor -- LISTEN BACKEND`
//! (e.g. `127.0.0.1:30343 127.0.0.1:30143`); `--current-thread` runs one tokio thread.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: l4_floor LISTEN BACKEND [--current-thread]";
    let listen: SocketAddr = args.next().context(usage)?.parse().context("LISTEN")?;
    let backend: SocketAddr = args.next().context(usage)?.parse().context("BACKEND")?;
    let current = args.next().as_deref() == Some("--current-thread");
    rlimit::increase_nofile_limit(u64::MAX).context("open-file limit")?;
    let runtime = if current {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .context("runtime")?;
    runtime.block_on(serve(listen, backend))
}

async fn serve(listen: SocketAddr, backend: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await.context("bind")?;
    println!("{{\"listening\":\"{}\"}}", listener.local_addr()?);
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = relay(client, backend).await {
                eprintln!("session: {e}");
            }
        });
    }
}

async fn relay(mut client: TcpStream, backend: SocketAddr) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut upstream = TcpStream::connect(backend).await?;
    upstream.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
