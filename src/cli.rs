//! The commands: `run`, `check`, `status`, `consent-url`. One function each; anyhow lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use pbx_teams_presence::config::{self, Config};
use pbx_teams_presence::graph::{self, GraphClient};
use pbx_teams_presence::sync::types::MatchStatus;
use pbx_teams_presence::{logging, pbx, service, store};

const DEFAULT_CONFIG: &str = "/etc/pbx-teams-presence/config.toml";

/// Keeps presence in sync between a PBX and Microsoft Teams, both ways.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground (systemd runs this).
    Run(ConfigArg),
    /// Validate the config, sign in, probe the Graph permissions and match every user.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also print the effective configuration (defaults filled in, secrets redacted).
        #[arg(long)]
        print_config: bool,
    },
    /// Show what the state database knows: users, matches, last states, sessions, errors.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the URL an Entra admin opens to grant the app's permissions.
    ConsentUrl(ConfigArg),
    /// Sign a subscription account in once (device code); its refresh token is kept in the
    /// state database and the daemon renews it from then on.
    Login {
        #[command(flatten)]
        config: ConfigArg,
        /// The account, as listed in notifications.accounts.
        #[arg(long)]
        account: String,
    },
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG, env = "PBX_TEAMS_PRESENCE_CONFIG")]
    config: PathBuf,
}

impl Cli {
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Run(a) => run(&a.config),
            Command::Check {
                config,
                print_config,
            } => check(&config.config, print_config),
            Command::Status { config, json } => status(&config.config, json),
            Command::ConsentUrl(a) => consent_url(&a.config),
            Command::Login { config, account } => login(&config.config, &account),
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::FAILURE
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(path: &Path) -> anyhow::Result<ExitCode> {
    // The level from the file is applied before anything logs; a bad file is reported by
    // `service::run` with the key and the line.
    let level = Config::load(path)
        .map(|c| c.log.level)
        .unwrap_or_else(|_| "info".into());
    let log_reload = logging::init(&level);
    let rt = runtime()?;
    rt.block_on(async {
        let mut options = service::RunOptions::new(path);
        options.log_reload = Some(log_reload);
        let signals = tokio::spawn(service::cancel_on_signal(options.shutdown.clone()));
        let result = service::run(options).await;
        signals.abort();
        result
    })
    .with_context(|| format!("pbx-teams-presence ({})", path.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn login(path: &Path, account: &str) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let account = account.trim().to_lowercase();
    let listed = config
        .notifications
        .as_ref()
        .is_some_and(|n| n.accounts.contains(&account));
    if !listed {
        anyhow::bail!(
            "{}: {account} is not in notifications.accounts (and notifications.enabled must be true)",
            path.display()
        );
    }
    let rt = runtime()?;
    let delegated = graph::delegated::Delegated::new(&service::delegated_settings(&config))?;
    let code = rt.block_on(delegated.start_device_login())?;
    println!(
        "To sign in {account}: open {} and enter the code {} (valid {} min).",
        code.verification_uri,
        code.user_code,
        code.expires_in.as_secs() / 60
    );
    println!("Sign in as {account} itself; waiting ...");
    let grant = rt.block_on(delegated.finish_device_login(&code))?;
    let refresh_token = grant.refresh_token.context(
        "Entra returned no refresh token: the app must be granted offline_access (see docs/notifications.md)",
    )?;
    let client = GraphClient::new(service::graph_settings_for(&config))?;
    let signed_in = rt.block_on(client.me(&grant.access_token))?;
    if signed_in.to_lowercase() != account {
        anyhow::bail!(
            "signed in as {signed_in}, not {account}: run login again and sign in as {account}"
        );
    }
    rt.block_on(async move {
        let opened = config.clone();
        let store =
            tokio::task::spawn_blocking(move || store::Store::open_configured(&opened, None))
                .await??;
        store
            .write(store::Write::SetAccountToken {
                account: account.clone(),
                refresh_token: config::Secret::new(refresh_token),
                at: service::Clock::default().now(),
            })
            .await;
        store.close().await?;
        println!(
            "{account} signed in; its token is saved. A running daemon uses it within a minute."
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn consent_url(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let a = &config.azure;
    println!(
        "{}",
        graph::consent_url(&a.login_url, &a.tenant_id, &a.client_id)
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints a passed probe step, or adds the failed one to `problems` with its advice;
/// `skip`: not checked (it needs the token that failed).
fn report_step(step: &graph::ProbeStep, skip: bool, problems: &mut Vec<String>) {
    match &step.result {
        Ok(detail) if detail.is_empty() => println!("ok: {}", step.name),
        Ok(detail) => println!("ok: {} ({detail})", step.name),
        Err(_) if skip => println!("not checked: {} (needs a token)", step.name),
        Err(why) => {
            let why = why.to_string();
            let advice = step.advice.trim();
            if advice.is_empty() || why.contains(advice) {
                problems.push(format!("{}: {why}", step.name));
            } else {
                problems.push(format!("{}: {why}; {advice}", step.name));
            }
        }
    }
}

/// Lists the group's users that have no usable extension (they are left out, not an error).
fn list_without_extension(g: &config::EntraGroupConfig, members: &[graph::GroupMember]) {
    let regex = g
        .extension_regex
        .as_ref()
        .map(config::ExtensionRegex::regex);
    for m in members {
        let value = m.attribute_value.as_deref();
        if value.and_then(|v| graph::extension_of(v, regex)).is_none() {
            let seen = value.map_or("empty".to_owned(), |v| format!("{v:?}"));
            println!(
                "note: group member {} has no usable extension in {} ({seen}): left out",
                m.upn, g.extension_attribute
            );
        }
    }
}

fn check(path: &Path, print_config: bool) -> anyhow::Result<ExitCode> {
    let mut problems = Vec::new();
    let config = Config::load(path)?;
    println!("config: {} is valid", path.display());
    if print_config {
        println!("{config}");
    }
    let directory = if config.users.file_optional && !config.users.file.exists() {
        println!(
            "users: no users file at {} (optional: users come from the Entra group)",
            config.users.file.display()
        );
        config::Directory::default()
    } else {
        let directory = config::load_users(&config.users.file)?;
        println!(
            "users: {} entries in {}",
            directory.entries.len(),
            config.users.file.display()
        );
        directory
    };
    credential(&config.azure.credential, &mut problems);
    state_database(&config, &mut problems);
    let client = GraphClient::new(service::graph_settings_for(&config))?;
    let rt = runtime()?;
    let report = rt.block_on(client.probe());
    let no_token = report.token.result.is_err();
    for step in report.steps() {
        // Without a token nothing else can be checked: one problem, not four.
        let skip = no_token && step.name != report.token.name;
        report_step(step, skip, &mut problems);
    }
    if let Some(g) = &config.users.entra_group {
        let (step, members) = rt.block_on(client.probe_group(&g.group, g.extension_attribute));
        report_step(&step, no_token, &mut problems);
        list_without_extension(g, &members);
    }
    if report.token.result.is_ok() {
        let emails = service::directory_emails(&directory);
        match rt.block_on(client.resolve_users(&emails)) {
            Ok(results) => {
                let mut matched = 0;
                for (email, m) in &results {
                    // The daemon's own wording (status and log say the same).
                    let info = service::MatchInfo::from_graph(m);
                    if info.status == MatchStatus::Matched {
                        matched += 1;
                    } else {
                        let why = info.detail.as_deref().unwrap_or(info.status.as_str());
                        problems.push(format!("user {email}: {why}"));
                    }
                }
                println!(
                    "match: {matched} of {} e-mail addresses found in Teams",
                    results.len()
                );
            }
            Err(e) => problems.push(format!("matching users: {e}")),
        }
    }
    if let Some(a) = &config.pbx.asterisk {
        let extensions: Vec<String> = directory
            .entries
            .iter()
            .map(|e| e.extension.to_string())
            .collect();
        // With "sip" in pbx.kind Asterisk's devices are not read: nothing to check there.
        let reads = config.pbx.asterisk_reads_calls();
        let devices_of = reads.then_some(extensions.as_slice());
        for step in rt.block_on(pbx::asterisk::probe::probe(a, devices_of)) {
            match step.result {
                Ok(detail) => println!("ok: {} ({detail})", step.name),
                Err(why) => problems.push(format!("{}: {why}", step.name)),
            }
        }
    }
    if let Some(n) = &config.notifications {
        let signed_in: Vec<String> = store::read_configured(&config)
            .map(|s| s.accounts.into_iter().map(|a| a.account).collect())
            .unwrap_or_default();
        for account in &n.accounts {
            if signed_in.contains(account) {
                println!("ok: notifications account {account} signed in");
            } else {
                problems.push(format!(
                    "notifications account {account} is not signed in (its users are polled): run pbx-teams-presence login --config {} --account {account}",
                    path.display()
                ));
            }
        }
    }
    for p in &problems {
        println!("problem: {p}");
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The PostgreSQL state database (`[store] kind = "postgres"`): reachable, and under `[ha]`
/// who leads. A SQLite file needs no check: the daemon creates it.
fn state_database(config: &Config, problems: &mut Vec<String>) {
    let config::StoreConfig::Postgres(pg) = &config.store else {
        return;
    };
    let shown = pg.shown();
    match store::read_configured(config) {
        Ok(s) => {
            println!("ok: state database {shown} ({} users)", s.users.len());
            if let Some(l) = &s.lease {
                println!(
                    "ok: leader {} (epoch {}), {} nodes seen",
                    l.holder,
                    l.epoch,
                    s.nodes.len()
                );
            }
        }
        // A new database has no schema yet: the first daemon creates it.
        Err(store::StoreError::OlderSchema { found: 0, .. }) => {
            println!("ok: state database {shown} (empty: the daemon creates the tables)");
        }
        Err(e) => problems.push(format!("[store] postgres_url: {e}")),
    }
}

/// Which credential the app signs in with; for a certificate, when it expires (a warning
/// within 30 days, a problem once expired).
fn credential(credential: &config::AzureCredential, problems: &mut Vec<String>) {
    let config::AzureCredential::Certificate(c) = credential else {
        println!("credential: client secret");
        return;
    };
    let cert = &c.certificate;
    let now = pbx_teams_presence::clock::wall_now();
    let expires = humantime::format_rfc3339_seconds(cert.not_after());
    let (subject, thumbprint) = (cert.subject(), cert.thumbprint());
    let Some(days) = cert.days_left(now) else {
        println!("credential: certificate {subject}, thumbprint {thumbprint}, expired {expires}");
        problems.push(format!(
            "the client certificate ({}) expired {expires}: make a new one and upload it to the app registration (docs/azure-setup.md)",
            c.certificate_file.display()
        ));
        return;
    };
    println!(
        "credential: certificate {subject}, thumbprint {thumbprint}, expires {expires} (in {days} days)"
    );
    if cert.expires_soon(now) {
        println!(
            "warning: the client certificate ({}) expires in {days} days: make a new one, upload it to the app registration and set it in [azure] (docs/azure-setup.md)",
            c.certificate_file.display()
        );
    }
}

fn status(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let snapshot = store::read_configured(&config)?;
    let report = service::status_report(&snapshot);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", service::status_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes, each said once: our errors already carry their cause in their
/// own text (`config.toml: cannot read: Permission denied`), so a cause whose text is already
/// there is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
