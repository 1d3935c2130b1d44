//! A world of many users, for the tests of load and of `[ha]` and for the failover bench.

use super::{World, user};

impl World {
    /// A world with `n` more users, each Available and matched by mail
    /// (`{name}{i}@contoso.com`), on extensions `extension(i)`, in the users file with the
    /// three; returns their Teams ids. The emulator keeps `log` requests.
    pub async fn crowd(
        n: usize,
        name: &str,
        extension: impl Fn(usize) -> String,
        log: usize,
    ) -> (World, Vec<String>) {
        let options = graph_emulator::EmulatorOptions {
            request_log_limit: log,
            ..Default::default()
        };
        let w = World::new_with(options).await;
        let mut ids = Vec::with_capacity(n);
        let mut lines = Vec::with_capacity(n);
        for i in 0..n {
            let mail = format!("{name}{i}@contoso.com");
            let id = w
                .graph
                .add_user(user(&format!("{name} {i}"), &mail, Some(&mail), &[]));
            w.graph.set_user_presence(&id, "Available", "Available");
            ids.push(id);
            lines.push(format!("{},{mail}", extension(i)));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        w.write_users(&refs);
        (w, ids)
    }
}
