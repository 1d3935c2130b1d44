//! When SIP messages of one kind went in or out of the daemon's SIP stack, read from its
//! TRACE lines ("SIP in from PEER: NOTIFY ...", "SIP out to PEER: SUBSCRIBE ..."), on this
//! process's clock. Install it on the target `pbx_teams_presence::pbx::sip::stack`.
#![allow(clippy::disallowed_methods)] // benches are outside observers: they read real time

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// The times of the lines that begin with `way` ("SIP in", "SIP out") and name `method`.
#[derive(Clone)]
pub struct WireTimes {
    way: &'static str,
    method: &'static str,
    times: Arc<Mutex<Vec<Instant>>>,
}

impl WireTimes {
    pub fn new(way: &'static str, method: &'static str) -> WireTimes {
        WireTimes {
            way,
            method,
            times: Arc::default(),
        }
    }

    /// The times so far (a copy: the layer keeps recording).
    pub fn times(&self) -> Vec<Instant> {
        self.times.lock().unwrap().clone()
    }
}

impl<S: tracing::Subscriber> Layer<S> for WireTimes {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let at = Instant::now();
        let mut text = Text(String::new());
        event.record(&mut text);
        if text.0.starts_with(self.way) && text.0.contains(&format!(": {} ", self.method)) {
            self.times.lock().unwrap().push(at);
        }
    }
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
