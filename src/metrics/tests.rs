//! The encoding: names, labels, and a scrape through the listener.

use std::time::Duration;

use super::*;

fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(start))
}

fn value(text: &str, series: &str) -> Option<f64> {
    let l = line(text, &format!("{series} "))?;
    l.rsplit(' ').next()?.parse().ok()
}

#[test]
fn a_fresh_registry_names_every_family_of_the_contract() {
    let text = Metrics::new().encode().unwrap();
    for (family, kind) in [
        ("build_info", "gauge"),
        ("users", "gauge"),
        ("sessions_active", "gauge"),
        ("graph_throttled", "counter"),
        ("pbx_events", "counter"),
        ("pbx_pushes", "counter"),
        ("pbx_connected", "gauge"),
        ("speaking_to_teams_seconds", "histogram"),
        ("poll_cycle_seconds", "histogram"),
        ("poll_interval_seconds", "gauge"),
        ("poll_budget_used_ratio", "gauge"),
        ("teams_to_pbx_seconds", "histogram"),
    ] {
        let want = format!("# TYPE {PREFIX}_{family} {kind}");
        assert!(text.contains(&want), "{want} missing from\n{text}");
    }
    let version = env!("CARGO_PKG_VERSION");
    let info = format!("{PREFIX}_build_info{{version=\"{version}\"}}");
    assert_eq!(value(&text, &info), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "pbx_teams_presence_graph_throttled_total"),
        Some(0.0)
    );
    let p = PREFIX;
    assert_eq!(
        value(&text, &format!("{p}_users{{match=\"pending\"}}")),
        Some(0.0)
    );
    assert_eq!(
        value(&text, &format!("{p}_pbx_events_total{{state=\"idle\"}}")),
        Some(0.0)
    );
    // Known only once they happen: every Graph op and status, subscriptions.
    assert!(
        !text.contains("graph_requests") && !text.contains("_subscriptions"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn values_land_under_their_labels() {
    let m = Metrics::new();
    m.graph_request("getPresencesByUserId", GraphStatus::Code(200));
    m.graph_request("getPresencesByUserId", GraphStatus::Code(200));
    m.graph_request("setPresence", GraphStatus::Code(429));
    m.graph_request("token", GraphStatus::Timeout);
    m.graph_request("batch", GraphStatus::Network);
    m.graph_throttled(3);
    m.pbx_event(CallState::Speaking);
    m.pbx_pushes(true, 2);
    m.pbx_pushes(false, 1);
    m.set_pbx_connected(true);
    m.set_sessions_active(4);
    m.set_subscriptions(2, 1);
    let mut users = UserCounts::default();
    for status in [Some(MatchStatus::Matched), Some(MatchStatus::Matched), None] {
        users.add(status);
    }
    m.set_users(&users);
    let text = m.encode().unwrap();
    let p = PREFIX;
    for (series, want) in [
        (
            format!("{p}_graph_requests_total{{op=\"getPresencesByUserId\",status=\"200\"}}"),
            2.0,
        ),
        (
            format!("{p}_graph_requests_total{{op=\"setPresence\",status=\"429\"}}"),
            1.0,
        ),
        (
            format!("{p}_graph_requests_total{{op=\"token\",status=\"timeout\"}}"),
            1.0,
        ),
        (
            format!("{p}_graph_requests_total{{op=\"batch\",status=\"network\"}}"),
            1.0,
        ),
        (format!("{p}_graph_throttled_total"), 3.0),
        (format!("{p}_pbx_events_total{{state=\"speaking\"}}"), 1.0),
        (format!("{p}_pbx_pushes_total{{result=\"ok\"}}"), 2.0),
        (format!("{p}_pbx_pushes_total{{result=\"failed\"}}"), 1.0),
        (format!("{p}_pbx_connected"), 1.0),
        (format!("{p}_sessions_active"), 4.0),
        (format!("{p}_subscriptions{{state=\"healthy\"}}"), 2.0),
        (format!("{p}_subscriptions{{state=\"unhealthy\"}}"), 1.0),
        (format!("{p}_users{{match=\"matched\"}}"), 2.0),
        (format!("{p}_users{{match=\"pending\"}}"), 1.0),
        (format!("{p}_users{{match=\"not_found\"}}"), 0.0),
    ] {
        assert_eq!(value(&text, &series), Some(want), "{series} in\n{text}");
    }
}

#[test]
fn histograms_have_buckets_from_half_a_millisecond_to_ten_seconds() {
    let m = Metrics::new();
    m.speaking_to_teams(Duration::from_micros(300));
    m.speaking_to_teams(Duration::from_millis(40));
    m.teams_to_pbx(Duration::from_secs(20));
    m.poll_cycle(Duration::from_secs(3));
    let text = m.encode().unwrap();
    let s = format!("{PREFIX}_speaking_to_teams_seconds");
    assert_eq!(
        value(&text, &format!("{s}_bucket{{le=\"0.0005\"}}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &format!("{s}_bucket{{le=\"0.05\"}}")),
        Some(2.0)
    );
    assert_eq!(
        value(&text, &format!("{s}_bucket{{le=\"10.0\"}}")),
        Some(2.0)
    );
    assert_eq!(value(&text, &format!("{s}_count")), Some(2.0));
    let t = format!("{PREFIX}_teams_to_pbx_seconds");
    assert_eq!(
        value(&text, &format!("{t}_bucket{{le=\"10.0\"}}")),
        Some(0.0)
    );
    assert_eq!(
        value(&text, &format!("{t}_bucket{{le=\"+Inf\"}}")),
        Some(1.0)
    );
    let p = format!("{PREFIX}_poll_cycle_seconds");
    assert_eq!(
        value(&text, &format!("{p}_bucket{{le=\"5.0\"}}")),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_listener_answers_a_scrape_and_nothing_else() {
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let m = Metrics::new();
    m.set_sessions_active(1);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(server::serve(listener, m, cancel.clone()));
    let client = reqwest::Client::new();
    let answer = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let kind = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(kind, server::CONTENT_TYPE);
    let text = answer.text().await.unwrap();
    assert_eq!(
        value(&text, "pbx_teams_presence_sessions_active"),
        Some(1.0)
    );
    let other = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(other.status(), 404);
    let post = client
        .post(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    cancel.cancel();
    task.await.unwrap();
}

#[test]
fn a_bound_address_in_use_names_the_key() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let taken = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = server::bind(addr).await.unwrap_err().to_string();
        assert!(
            err.contains("metrics.listen") && err.contains(&addr.to_string()),
            "{err}"
        );
    });
}
