//! Users from Asterisk's voicemail boxes (`pbx.users_from_voicemail`): FreePBX keeps each
//! user's e-mail there. Merged under the users file, which wins on conflicts.

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::{Config, Directory, UserEntry};
use crate::pbx::asterisk::ami::{AmiClient, AmiError, VoicemailUser};
use crate::sync::types::Direction;

/// The voicemail users, when the config asks for them; `None` when it does not.
pub async fn fetch(config: &Config) -> Option<Result<Vec<VoicemailUser>, AmiError>> {
    let a = config.pbx.asterisk.as_ref()?;
    let ami = a.ami.as_ref().filter(|_| a.users_from_voicemail)?;
    let read = async {
        let mut client = AmiClient::connect(
            ami.address.as_str(),
            &ami.username,
            ami.password.expose(),
            crate::pbx::asterisk::REQUEST_TIMEOUT,
        )
        .await?;
        let users = client.voicemail_users().await?;
        let _ = client.logoff().await;
        Ok(users)
    };
    Some(read.await)
}

/// `file` plus every voicemail box with an e-mail whose mailbox is not in `file`. Takes the
/// file's directory by value: without boxes (the usual case) nothing is copied.
pub fn merge(file: Directory, boxes: &[VoicemailUser]) -> Directory {
    if boxes.is_empty() {
        return file;
    }
    let mut taken: HashSet<Arc<str>> = file.entries.iter().map(|e| e.extension.clone()).collect();
    let mut entries = file.entries;
    for b in boxes {
        let email = b.email.trim().to_lowercase();
        if email.is_empty() || !email.contains('@') {
            tracing::debug!(mailbox = %b.mailbox, "voicemail box without an e-mail skipped");
            continue;
        }
        let extension: Arc<str> = b.mailbox.as_str().into();
        if !taken.insert(extension.clone()) {
            continue;
        }
        entries.push(UserEntry {
            extension,
            email: email.into(),
            direction: Direction::Both,
            line: 0,
        });
    }
    Directory { entries }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_users;

    fn vm(mailbox: &str, email: &str) -> VoicemailUser {
        VoicemailUser {
            mailbox: mailbox.into(),
            context: "default".into(),
            full_name: "X".into(),
            email: email.into(),
        }
    }

    #[test]
    fn the_users_file_wins_and_boxes_without_mail_are_skipped() {
        let file = parse_users("1001,alice@file.example\n", Path::new("/u.csv")).unwrap();
        let merged = merge(
            file,
            &[
                vm("1001", "alice@voicemail.example"),
                vm("1002", " Bob@Contoso.com "),
                vm("1003", ""),
                vm("1002", "dup@contoso.com"),
            ],
        );
        let got: Vec<(&str, &str)> = merged
            .entries
            .iter()
            .map(|e| (&*e.extension, &*e.email))
            .collect();
        assert_eq!(
            got,
            [("1001", "alice@file.example"), ("1002", "bob@contoso.com")]
        );
    }
}
