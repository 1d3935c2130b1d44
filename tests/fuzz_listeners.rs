//! The network parsers fuzzed through their listeners and sockets: the daemon's PBX event
//! listener, its change-notification webhook, and the AMI client against a fake server that
//! answers with mutated frames. Refused input must change no state, and the daemon must still
//! work afterwards. See `fuzz_inputs.rs` for the harness and `FUZZ_SCALE`.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod common;
mod fuzz;

use std::time::Duration;

use common::notify::{webhook, world};
use common::*;
use fuzz::{Tally, cases, run};
use pbx_teams_presence::pbx::asterisk::ami::AmiClient;
use pbx_teams_presence::pbx::http::parse_batch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What the daemon knows of a user's PBX side.
fn pbx_side(w: &World, extension: &str) -> String {
    let u = w.user_status(extension);
    format!("{} {} {}", u["pbx_state"], u["dnd"], u["in_call_session"])
}

#[test]
fn refused_pbx_event_batches_change_nothing() {
    let rt = runtime();
    let mut w = rt.block_on(async {
        let mut w = World::new().await;
        w.start().await;
        eventually(10, "users in status", || {
            !w.user_status(BOB).is_null() && !w.user_status(CAROL).is_null()
        })
        .await;
        w
    });
    let before = (pbx_side(&w, BOB), pbx_side(&w, CAROL));
    let client = reqwest::Client::new();
    let url = format!("http://{}/pbx/events", w.listen);
    let tally = Tally::new("pbx_listener");
    run("pbx_batch", cases(300), |input| {
        // Only what the parser refuses: accepted batches change state by design.
        if parse_batch(&input).is_ok() {
            return;
        }
        let token = if tally.total() % 4 == 3 {
            "wrong"
        } else {
            w.token.as_str()
        };
        let status = rt.block_on(async {
            let resp = client
                .post(&url)
                .bearer_auth(token)
                .body(input)
                .send()
                .await;
            resp.expect("the listener answers").status().as_u16()
        });
        assert!(matches!(status, 400 | 401 | 413 | 415), "status {status}");
        tally.refused();
    });
    // The daemon still works: a valid event after all that is applied, and nothing else was.
    rt.block_on(async {
        w.pbx_event(ALICE, "speaking").await;
        eventually(10, "the valid event applied", || {
            w.app_session(ALICE).is_some()
        })
        .await;
    });
    assert_eq!((pbx_side(&w, BOB), pbx_side(&w, CAROL)), before);
    assert_eq!(w.set_presence_calls(BOB) + w.set_presence_calls(CAROL), 0);
    tally.report();
    rt.block_on(async { w.stop().await.unwrap() });
}

#[test]
fn webhook_bodies_never_break_the_daemon() {
    let rt = runtime();
    let mut w = rt.block_on(async {
        let mut w = world(&[common::notify::SYNC1], "").await;
        w.start().await;
        w
    });
    let client = reqwest::Client::new();
    let url = webhook(&w);
    let tally = Tally::new("webhook_body");
    run("webhook_body", cases(300), |input| {
        let status = rt.block_on(async {
            let resp = client
                .post(&url)
                .header("content-type", "application/json")
                .body(input)
                .send()
                .await;
            resp.expect("the webhook answers").status().as_u16()
        });
        assert!(status < 500 || status == 503, "status {status}");
        if status >= 400 {
            tally.refused();
        } else {
            tally.accepted();
        }
    });
    rt.block_on(async {
        w.pbx_event(ALICE, "speaking").await;
        eventually(10, "the daemon still works", || {
            w.app_session(ALICE).is_some()
        })
        .await;
    });
    assert!(w.set_presence_calls(BOB) + w.set_presence_calls(CAROL) == 0);
    tally.report();
    rt.block_on(async { w.stop().await.unwrap() });
}

/// Reads one AMI action (up to the blank line) and returns its ActionID.
async fn read_action(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("ActionID: "))
        .map(str::to_owned)
}

/// A fake AMI server: banner, a successful login, then `frames` (with `{id}` replaced by the
/// list action's ActionID) and the end of the connection.
async fn serve_once(listener: tokio::net::TcpListener, frames: Vec<u8>) {
    let Ok((mut s, _)) = listener.accept().await else {
        return;
    };
    let _ = s.write_all(b"Asterisk Call Manager/11.0.0\r\n").await;
    let Some(login) = read_action(&mut s).await else {
        return;
    };
    let ok = format!(
        "Response: Success\r\nActionID: {login}\r\nMessage: Authentication accepted\r\n\r\n"
    );
    let _ = s.write_all(ok.as_bytes()).await;
    let Some(list) = read_action(&mut s).await else {
        return;
    };
    let frames = String::from_utf8_lossy(&frames).replace("{id}", &list);
    let _ = s.write_all(frames.as_bytes()).await;
}

#[test]
fn ami_frames_never_panic() {
    let rt = runtime();
    let tally = Tally::new("ami_frames");
    run("ami_frames", cases(500), |input| {
        let result = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(serve_once(listener, input));
            let mut client = AmiClient::connect(addr, "fuzz", "fuzz", Duration::from_millis(500))
                .await
                .expect("the fake server logs us in");
            let users = client.voicemail_users().await;
            server.abort();
            users
        });
        match result {
            Ok(_) => tally.accepted(),
            Err(_) => tally.refused(),
        }
    });
    tally.report();
}
