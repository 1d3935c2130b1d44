//! Hot reload: the config or users file changed. A valid change applies at once; an invalid
//! one is logged with its reason and the last good config stays in force.

use std::collections::HashSet;
use std::sync::Arc;

use super::build::{
    engine_settings, graph_settings, known_extensions, user_extensions, watch_config,
};
use super::daemon::Daemon;
use super::matching;
use super::voicemail;
use crate::config::{self, Change, Directory};
use crate::graph::GraphClient;
use crate::store::Write;

pub async fn apply(d: &mut Daemon) {
    let path = d.options.config_path.clone();
    let loaded = tokio::task::spawn_blocking(move || config::load_all(&path)).await;
    let new = match loaded {
        Ok(Ok(new)) => new,
        Err(e) => {
            tracing::error!(error = %e, "config reload task failed");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "config change ignored; the last good config stays in force");
            d.error("config", None, &e.to_string());
            return;
        }
    };
    let (config, file_users) = new;
    match voicemail::fetch(&config).await {
        Some(Ok(boxes)) => d.voicemail_boxes = boxes,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "voicemail boxes not read; the ones read before are kept");
            d.error("pbx", None, &format!("voicemail users: {e}"));
        }
        None => d.voicemail_boxes.clear(),
    }
    let new = (config, voicemail::merge(file_users, &d.voicemail_boxes));
    let old = (d.config.clone(), d.directory.clone());
    let changes = config::diff(&old, &new);
    if changes.is_empty() {
        return;
    }
    tracing::info!(?changes, "config change applied");
    let (config, directory) = new;
    d.config = config;
    for change in changes {
        apply_one(d, change, &directory).await;
    }
}

async fn apply_one(d: &mut Daemon, change: Change, directory: &Directory) {
    match change {
        Change::UsersAdded(_) | Change::UsersRemoved(_) | Change::UsersChanged(_) => {
            if d.directory != *directory {
                apply_users(d, directory.clone());
            }
        }
        Change::PollInterval => {
            d.interval_tx.send_replace(d.config.sync.poll_interval);
        }
        Change::InCallExpiration => d.engine.set_settings(engine_settings(&d.config)),
        // Read from the current config at every tick.
        Change::ResolveInterval => {}
        Change::UsersFile => {
            let (watch, reload) = watch_config(&d.config);
            d.rx.watch = watch;
            d.rx.reload = reload;
        }
        Change::Mapping => {
            let commands = d.engine.set_mapping(d.config.mapping.clone());
            d.execute(commands);
        }
        Change::Azure => match GraphClient::new(graph_settings(&d.config)) {
            Ok(client) => {
                d.graph_tx.send_replace(client);
                // Lookups still running against the old tenant or app must not land.
                d.resolving.abort_all();
                while d.rx.resolved.try_recv().is_ok() {}
                d.match_changes.clear();
                d.matches.clear();
                d.resolve(matching::all_emails(&d.directory));
            }
            Err(e) => tracing::error!(error = %e, "the new [azure] settings cannot be used"),
        },
        Change::Pbx => {
            update_connector(d).await;
            // Whatever the old pusher had not delivered is gone with it: push every user's
            // state again at the next poll.
            d.engine.forget_pushed();
        }
        Change::LogLevel => {
            if let Some(reload) = &d.options.log_reload
                && let Err(e) = reload(&d.config.log.level)
            {
                tracing::warn!(error = %e, "log.level not applied");
            }
        }
        Change::RestartRequired(key) => {
            tracing::warn!(
                key,
                "this setting changes only after a restart of the daemon"
            );
        }
    }
}

fn apply_users(d: &mut Daemon, directory: Directory) {
    let now = d.options.clock.now();
    let present: HashSet<&str> = directory
        .entries
        .iter()
        .map(|e| e.extension.as_str())
        .collect();
    for old in &d.directory.entries {
        if !present.contains(old.extension.as_str()) {
            d.store.write(Write::RemoveUser {
                extension: old.extension.clone(),
            });
        }
    }
    d.directory = directory;
    d.known_tx.send_replace(known_extensions(&d.directory));
    d.users_tx
        .send_replace(user_extensions(&d.config, &d.directory));
    let commands = d
        .engine
        .set_users(matching::user_specs(&d.directory, &d.matches), now);
    d.execute(commands);
    d.ids_tx.send_replace(Arc::new(d.engine.poll_ids()));
    d.save_directory();
    d.resolve(matching::unresolved(&d.directory, &d.matches));
}

/// Apply the new `[pbx]` section; on failure the daemon keeps running and says what to fix.
async fn update_connector(d: &mut Daemon) {
    if let Err(e) = d
        .connector
        .update(&d.config.pbx, &d.links, &d.tracker)
        .await
    {
        tracing::error!(error = %e, "the new [pbx] settings cannot be used; the connector keeps the old ones where it can");
    }
    let pbx = d.connector.bound();
    d.options.bound.send_modify(|b| b.pbx = pbx);
    d.store.write(Write::SetMeta {
        key: "pbx_listen".into(),
        value: pbx.map(|a| a.to_string()).unwrap_or_default(),
    });
}
