//! `graph-emulator --listen 127.0.0.1:8765 [--users N]`: runs the emulator as a process for
//! demos and external tools (e.g. the SDK probe) and prints the app credentials.

use std::net::SocketAddr;

use clap::Parser;
use graph_emulator::{Emulator, EmulatorOptions, User};

/// Microsoft Graph + Entra token emulator (loopback HTTP).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// Users to seed: user0001@contoso.com, ...
    #[arg(long, default_value_t = 0)]
    users: usize,
    /// Presence requests per app per 30 s (1500 per the API pages, 10000 per the current
    /// throttling page).
    #[arg(long, default_value_t = 1500)]
    presence_limit: u32,
    /// Fixed tenant id (default: random).
    #[arg(long)]
    tenant_id: Option<String>,
    /// Fixed client id of the default app (default: random).
    #[arg(long)]
    client_id: Option<String>,
    /// Fixed client secret of the default app (default: random).
    #[arg(long, env = "GRAPH_EMULATOR_CLIENT_SECRET")]
    client_secret: Option<String>,
    /// Accept http:// notification URLs (Graph requires https; for loopback receivers).
    #[arg(long)]
    allow_http_notification_urls: bool,
    /// `interval` the device-code endpoint answers, in seconds (Entra: 5).
    #[arg(long, default_value_t = 5)]
    device_code_interval: u64,
    /// A certificate (PEM) registered for the default app: it may then sign in with client
    /// assertions signed by the certificate's key. May be repeated.
    #[arg(long)]
    client_certificate: Vec<std::path::PathBuf>,
    /// Refuse a client assertion whose `jti` was already used.
    #[arg(long)]
    reject_reused_assertions: bool,
}

fn seed_user(i: usize) -> User {
    let upn = format!("user{i:04}@contoso.com");
    User {
        id: None,
        display_name: format!("User {i:04}"),
        mail: Some(upn.clone()),
        proxy_addresses: vec![
            format!("SMTP:{upn}"),
            format!("smtp:user{i:04}@contoso.onmicrosoft.com"),
        ],
        user_principal_name: upn,
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let opts = EmulatorOptions {
        presence_limit_per_30s: args.presence_limit,
        tenant_id: args.tenant_id,
        client_id: args.client_id,
        client_secret: args.client_secret,
        allow_http_notification_urls: args.allow_http_notification_urls,
        device_code_interval: args.device_code_interval,
        reject_reused_assertions: args.reject_reused_assertions,
        ..EmulatorOptions::default()
    };
    let emu = Emulator::start_with(args.listen, opts).await?;
    for file in &args.client_certificate {
        let pem = std::fs::read(file)?;
        let thumbprint = emu
            .add_app_certificate(&emu.client_id(), &pem)
            .map_err(|why| std::io::Error::other(format!("{}: {why}", file.display())))?;
        println!("certificate   {} (x5t#S256 {thumbprint})", file.display());
    }
    for i in 1..=args.users {
        emu.add_user(seed_user(i));
    }
    println!("base_url      {}", emu.base_url());
    println!("tenant_id     {}", emu.tenant_id());
    println!("client_id     {}", emu.client_id());
    println!("client_secret {}", emu.client_secret());
    println!("users         {}", args.users);
    println!("control       {}/_control", emu.base_url());
    tokio::signal::ctrl_c().await?;
    emu.shutdown().await;
    Ok(())
}
