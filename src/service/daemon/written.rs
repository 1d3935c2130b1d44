//! What the writers did: sessions and preferred DNDs written or cleared in Teams, said in
//! the journal, recorded in the store, and told to the engine when a user's own status
//! turned out to have replaced our preferred DND.

use super::Daemon;
use super::lines;
use crate::service::writer::{Lane, Written};
use crate::store::Write;

impl Daemon {
    pub(super) fn on_written(&mut self, w: Written) {
        let extension = w.wanted.extension();
        if let Err(why) = &w.result {
            lines::write_failed(self.who(extension), &w.teams_id, &w.wanted, why);
            let now = self.clock.now();
            self.out
                .error("graph", Some(extension), why.to_string(), now);
            self.out.count("write_errors", 1);
            return;
        }
        match w.wanted.lane() {
            Lane::Session => self.session_written(&w),
            Lane::Preferred => self.preferred_written(&w),
        }
    }

    /// A session write that landed.
    fn session_written(&mut self, w: &Written) {
        let clear = w.wanted.clears();
        let said = w.wanted.presence();
        let who = self.who(w.wanted.extension());
        lines::session_written(who, &w.teams_id, said, clear, w.repeat);
        if clear && !self.engine.has_session(&w.teams_id) {
            self.out.write(Write::CloseSession {
                teams_id: w.teams_id.clone(),
            });
        }
        let counter = if clear {
            "clear_presence"
        } else {
            "set_presence"
        };
        self.out.count(counter, 1);
    }

    /// A preferred DND write that landed, or found the user's own status.
    fn preferred_written(&mut self, w: &Written) {
        let who = self.who(w.wanted.extension());
        let clear = w.wanted.clears();
        if w.left {
            lines::preferred_left(who, &w.teams_id);
            self.engine.preferred_left(&w.teams_id);
            self.out.write(Write::ClosePreferred {
                teams_id: w.teams_id.clone(),
            });
            return;
        }
        lines::preferred_written(who, &w.teams_id, &w.wanted);
        if clear && !self.engine.has_preferred(&w.teams_id) {
            self.out.write(Write::ClosePreferred {
                teams_id: w.teams_id.clone(),
            });
        }
        let counter = if clear {
            "clear_preferred_presence"
        } else {
            "set_preferred_presence"
        };
        self.out.count(counter, 1);
    }
}
