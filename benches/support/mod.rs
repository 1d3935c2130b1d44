//! What several benches share: users for the emulator and the daemon.

use std::path::Path;

use graph_emulator::{Emulator, User};

/// `n` users, each Available in Teams, and the users file that lists them (extensions from
/// 100000), in `dir`. Returns their Teams ids, in extension order.
pub fn seed(graph: &Emulator, n: usize, dir: &Path) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let mut users = String::from("extension,email\n");
    for i in 0..n {
        let email = format!("user{i:06}@contoso.com");
        let id = graph.add_user(User {
            id: None,
            display_name: format!("User {i}"),
            user_principal_name: email.clone(),
            mail: Some(email.clone()),
            proxy_addresses: vec![],
            ..Default::default()
        });
        graph.set_user_presence(&id, "Available", "Available");
        ids.push(id);
        users.push_str(&format!("{},{email}\n", 100_000 + i));
    }
    std::fs::write(dir.join("users.csv"), users).unwrap();
    ids
}
