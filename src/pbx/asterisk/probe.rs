//! What `check` asks Asterisk: do ARI and AMI take our credentials, and does every user's
//! device exist? Each step is a line for the admin: `ok: ...` or a problem naming the key.

use super::REQUEST_TIMEOUT;
use super::ami::AmiClient;
use super::ari::Ari;
use crate::config::AsteriskPbxConfig;

/// One checked step: what was checked, and the outcome.
pub struct Step {
    pub name: String,
    pub result: Result<String, String>,
}

fn step(name: impl Into<String>, result: Result<String, String>) -> Step {
    Step {
        name: name.into(),
        result,
    }
}

/// Checks ARI, the devices of `extensions` (`None`: the connector reads no devices, as with
/// `"sip"` in `pbx.kind`), and AMI when it is set.
pub async fn probe(config: &AsteriskPbxConfig, extensions: Option<&[String]>) -> Vec<Step> {
    let mut steps = Vec::new();
    let ari = match Ari::new(config, REQUEST_TIMEOUT) {
        Ok(a) => a,
        Err(e) => return vec![step("ari", Err(e.to_string()))],
    };
    match ari.ping().await {
        Ok(()) => steps.push(step("ari", Ok(ari.shown_url()))),
        Err(e) => {
            steps.push(step(
                "ari",
                Err(format!("{e} (pbx.ari_url {})", ari.shown_url())),
            ));
            return steps;
        }
    }
    if let Some(extensions) = extensions {
        steps.extend(devices(&ari, config, extensions).await);
    }
    if let Some(ami) = &config.ami {
        let login = AmiClient::connect(
            ami.address.as_str(),
            &ami.username,
            ami.password.expose(),
            REQUEST_TIMEOUT,
        )
        .await;
        match login {
            Ok(mut client) => {
                if config.users_from_voicemail {
                    match client.voicemail_users().await {
                        Ok(boxes) => {
                            steps.push(step("ami", Ok(format!("{} voicemail boxes", boxes.len()))))
                        }
                        Err(e) => steps.push(step("ami: VoicemailUsersList", Err(e.to_string()))),
                    }
                } else {
                    steps.push(step("ami", Ok(ami.address.clone())));
                }
                let _ = client.logoff().await;
            }
            Err(e) => steps.push(step(
                "ami",
                Err(format!(
                    "{e} (pbx.ami_address {}, pbx.ami_username, pbx.ami_password_file)",
                    ami.address
                )),
            )),
        }
    }
    steps
}

/// Whether every user's devices exist: a problem per unknown device, then the count.
async fn devices(ari: &Ari, config: &AsteriskPbxConfig, extensions: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut devices = 0;
    for ext in extensions {
        for device in config.devices_of(ext) {
            devices += 1;
            let why = match ari.device_state(&device).await {
                // Asterisk's answer for a device no channel driver knows (verified).
                Ok(state) if state == "INVALID" => "Asterisk does not know this device".to_owned(),
                Ok(_) => continue,
                Err(e) => e.to_string(),
            };
            let why = format!("{why}; fix pbx.devices or pbx.default_devices");
            steps.push(step(format!("user {ext}: device {device}"), Err(why)));
        }
    }
    steps.push(step(
        "devices",
        Ok(format!("{devices} devices of {} users", extensions.len())),
    ));
    steps
}
