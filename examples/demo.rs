//! The demo: the real daemon wiring against the bundled Graph emulator and a simulated PBX,
//! so presence can be watched flowing both ways without an Azure tenant.
//!
//!     cargo run --example demo            # runs until Ctrl-C
//!     cargo run --example demo -- 30      # stops after 30 seconds
//!
//! What happens, in a loop: Teams users change their presence (the emulator plays their Teams
//! clients) and the daemon pushes each change to the simulated PBX; the simulated PBX places
//! calls, and the daemon writes "In a call" to Teams while they last.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::routing::post;
use graph_emulator::{Emulator, User};
use pbx_teams_presence::{logging, service};
use serde_json::Value;

const PEOPLE: [(&str, &str); 3] = [
    ("1001", "alice@contoso.com"),
    ("1002", "bob@contoso.com"),
    ("1003", "carol@contoso.com"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: Option<u64> = std::env::args().nth(1).and_then(|s| s.parse().ok());
    logging::init("info");
    let graph = Emulator::start()
        .await
        .context("starting the Graph emulator")?;
    let mut ids = Vec::new();
    for (_, email) in PEOPLE {
        let name = email.split('@').next().unwrap_or(email);
        let id = graph.add_user(User {
            id: None,
            display_name: name.into(),
            user_principal_name: email.into(),
            mail: Some(email.into()),
            proxy_addresses: vec![],
            ..Default::default()
        });
        graph.set_user_presence(&id, "Available", "Available");
        ids.push(id);
    }
    let push_url = start_pbx_receiver().await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &graph, &push_url)?;
    tracing::info!(target: "demo", config = %config.display(), graph = %graph.base_url(), "demo: starting the daemon");

    let options = service::RunOptions::new(&config);
    let shutdown = options.shutdown.clone();
    let mut bound = options.bound.subscribe();
    let mut daemon = tokio::spawn(service::run(options));
    // The daemon listens on a free port (port 0 in the config) and says which.
    let listen = tokio::select! {
        b = bound.wait_for(|b| b.pbx.is_some()) => b.ok().and_then(|b| b.pbx),
        result = &mut daemon => {
            result??;
            None
        }
    }
    .context("the daemon stopped before it listened")?;
    tokio::spawn(service::cancel_on_signal(shutdown.clone()));
    if let Some(s) = seconds {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(s)).await;
            stop.cancel();
        });
    }
    let pbx = tokio::spawn(scenario(graph.clone(), ids, listen));
    daemon.await??;
    pbx.abort();
    tracing::info!(target: "demo", "demo: stopped; every In-a-call session was cleared");
    Ok(())
}

/// The story the demo tells, again and again.
async fn scenario(graph: Emulator, ids: Vec<String>, listen: SocketAddr) {
    let client = reqwest::Client::new();
    let step = Duration::from_secs(3);
    tokio::time::sleep(step).await;
    loop {
        teams(
            &graph,
            &ids[0],
            "Busy",
            "InAMeeting",
            "Alice joins a Teams meeting",
        );
        tokio::time::sleep(step).await;
        call(
            &client,
            listen,
            "1002",
            "speaking",
            "Bob answers a call on his desk phone",
        )
        .await;
        tokio::time::sleep(step).await;
        show(&graph, &ids[1], "Bob");
        teams(
            &graph,
            &ids[2],
            "DoNotDisturb",
            "Presenting",
            "Carol starts presenting",
        );
        tokio::time::sleep(step).await;
        call(&client, listen, "1002", "idle", "Bob hangs up").await;
        tokio::time::sleep(step).await;
        show(&graph, &ids[1], "Bob");
        teams(
            &graph,
            &ids[0],
            "Available",
            "Available",
            "Alice leaves the meeting",
        );
        teams(&graph, &ids[2], "Away", "Away", "Carol steps away");
        call(
            &client,
            listen,
            "1001",
            "ringing",
            "Alice's phone rings (nothing is written)",
        )
        .await;
        tokio::time::sleep(step).await;
        call(&client, listen, "1001", "idle", "Alice does not answer").await;
        teams(&graph, &ids[2], "Available", "Available", "Carol is back");
        tokio::time::sleep(step).await;
    }
}

fn teams(graph: &Emulator, id: &str, availability: &str, activity: &str, what: &str) {
    tracing::info!(target: "demo", "TEAMS  {what}: {availability}/{activity}");
    graph.set_user_presence(id, availability, activity);
}

fn show(graph: &Emulator, id: &str, who: &str) {
    if let Some((a, b)) = graph.presence(id) {
        tracing::info!(target: "demo", "TEAMS  {who} is now shown as {a}/{b}");
    }
}

async fn call(client: &reqwest::Client, listen: SocketAddr, ext: &str, state: &str, what: &str) {
    tracing::info!(target: "demo", "PBX -> {what} (extension {ext}: {state})");
    let sent = client
        .post(format!("http://{listen}/pbx/events"))
        .bearer_auth("demo-token")
        .json(&serde_json::json!({"extension": ext, "state": state}))
        .send()
        .await;
    if let Err(e) = sent {
        tracing::warn!(target: "demo", error = %e, "the simulated PBX could not reach the daemon");
    }
}

/// The simulated PBX's receiving side: prints every update the daemon pushes.
async fn start_pbx_receiver() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/presence", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/presence",
        post(|Json(body): Json<Value>| async move {
            for u in body["updates"].as_array().into_iter().flatten() {
                tracing::info!(target: "demo", "PBX <- extension {} ({}) is now {} [{}/{}]",
                    u["extension"].as_str().unwrap_or("?"), u["email"].as_str().unwrap_or("?"),
                    u["state"].as_str().unwrap_or("?"), u["availability"].as_str().unwrap_or("?"),
                    u["activity"].as_str().unwrap_or("?"));
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

fn write_config(
    dir: &std::path::Path,
    graph: &Emulator,
    push: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let users: String = PEOPLE
        .iter()
        .map(|(ext, email)| format!("{ext},{email}\n"))
        .collect();
    std::fs::write(dir.join("users.csv"), format!("extension,email\n{users}"))?;
    let base = graph.base_url();
    let config = format!(
        r#"[azure]
tenant_id = "{}"
client_id = "{}"
client_secret = "{}"
login_url = "{base}"
graph_url = "{base}"

[sync]
state_db = "state.db"
poll_interval = "2s"

[users]
file = "users.csv"

[pbx]
kind = "http"
listen = "127.0.0.1:0"
token = "demo-token"
push_url = "{push}"
"#,
        graph.tenant_id(),
        graph.client_id(),
        graph.client_secret()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}
