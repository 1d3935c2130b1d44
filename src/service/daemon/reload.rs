//! Applying a reloaded config (the reloader task read and validated it): each change goes to
//! the part it concerns. Nothing here waits: a new connector starts in the connector task.

use std::sync::Arc;

use super::Daemon;
use crate::config::{Change, Directory};
use crate::graph::GraphClient;
use crate::service::build::{
    engine_settings, graph_settings, known_extensions, remove_departed, user_extensions,
};
use crate::service::reloader::Reloaded;

impl Daemon {
    pub(super) fn on_reloaded(&mut self, reloaded: Reloaded) {
        self.config = reloaded.config;
        for change in reloaded.changes {
            self.apply_change(change, &reloaded.directory);
        }
    }

    fn apply_change(&mut self, change: Change, directory: &Arc<Directory>) {
        match change {
            Change::UsersAdded(_) | Change::UsersRemoved(_) | Change::UsersChanged(_) => {
                if !Arc::ptr_eq(&self.directory, directory) {
                    self.apply_users(Arc::clone(directory));
                }
            }
            Change::PollInterval => {
                self.parts
                    .feeds
                    .pacing
                    .send_replace(self.config.sync.pacing());
            }
            Change::InCallExpiration => self.engine.set_settings(engine_settings(&self.config)),
            Change::DndToTeams => {
                self.engine.set_settings(engine_settings(&self.config));
                let commands = self.engine.reconcile_all(self.clock.now());
                self.execute(commands);
            }
            // Read from the current config when the next round is planned.
            Change::ResolveInterval => {}
            // The reloader watches the new file and sets the log filter itself.
            Change::UsersFile | Change::LogLevel => {}
            Change::Mapping => {
                let commands = self.engine.set_mapping(self.config.mapping.clone());
                self.execute(commands);
            }
            Change::Azure => self.apply_azure(),
            Change::Pbx => {
                self.parts.pbx.update(self.config.pbx.clone());
                // Whatever the old pusher had not delivered is gone with it: push every
                // user's state again at the next poll.
                self.engine.forget_pushed();
            }
            Change::RestartRequired(key) => {
                tracing::warn!(key, "{key} changes only after a restart of the daemon");
            }
        }
    }

    /// A new tenant or app: a new Graph client, and every user looked up again (answers still
    /// coming for the old one are dropped).
    fn apply_azure(&mut self) {
        match GraphClient::new(graph_settings(&self.config, &self.metrics, &self.fence)) {
            Ok(client) => {
                self.parts.feeds.graph.send_replace(client);
                self.matching.restart(&self.directory);
                self.parts.resolver.restart(self.matching.generation());
                self.start_lookup();
            }
            Err(e) => tracing::error!(error = %e, "the new [azure] settings cannot be used: {e}"),
        }
    }

    fn apply_users(&mut self, directory: Arc<Directory>) {
        let before = self.directory.entries.iter().map(|e| &*e.extension);
        remove_departed(&mut self.out, before, &directory);
        self.directory = directory;
        let feeds = &self.parts.feeds;
        feeds.known.send_replace(known_extensions(&self.directory));
        feeds
            .users
            .send_replace(user_extensions(&self.config, &self.directory));
        self.apply_matches(self.clock.now());
        self.save_directory();
        self.matching.want_unresolved(&self.directory);
        self.start_lookup();
    }
}
