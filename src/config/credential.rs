//! How the app signs in (`[azure]`): a client secret (`client_secret`, `client_secret_file`
//! or the systemd credential `client-secret`) or a certificate (`client_certificate_file` +
//! `client_key_file`, or the systemd credentials `client-certificate` + `client-key`). Keys
//! written in the file come first; the credentials directory is looked at only when the file
//! names neither kind. The certificate and key are read and checked here, so a bad file is a
//! config error naming its key and file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::file::AzureSection;
use super::secret::{self, SecretSpec, credential_file};
use super::validate::Ctx;
use super::{AzureCredential, CertificateCredential, ConfigError};
use crate::graph::{CertificateError, ClientCertificate};

const CERT_KEY: &str = "azure.client_certificate_file";
const KEY_KEY: &str = "azure.client_key_file";
const CERT_CREDENTIAL: &str = "client-certificate";
const KEY_CREDENTIAL: &str = "client-key";
const SECRET_CREDENTIAL: &str = "client-secret";

/// The credential `[azure]` asks for, read and checked.
pub(super) fn resolve(ctx: &Ctx<'_>, a: &AzureSection) -> Result<AzureCredential, ConfigError> {
    let secret_written = a.client_secret.is_some() || a.client_secret_file.is_some();
    let cert_written = a.client_certificate_file.is_some() || a.client_key_file.is_some();
    match (secret_written, cert_written) {
        (true, true) => {
            let key = if a.client_secret.is_some() {
                "azure.client_secret"
            } else {
                "azure.client_secret_file"
            };
            Err(ctx.invalid(
                key,
                format!(
                    "set either a client secret ({key}) or a certificate ({CERT_KEY} and \
                     {KEY_KEY}), not both"
                ),
            ))
        }
        (false, true) => {
            let cert = a.client_certificate_file.as_deref().map(|p| ctx.path(p));
            let key = a.client_key_file.as_deref().map(|p| ctx.path(p));
            match (cert, key) {
                (Some(cert), Some(key)) => certificate(ctx, cert, key),
                (None, _) => Err(ctx.invalid(CERT_KEY, format!("not set; {KEY_KEY} needs it"))),
                (_, None) => Err(ctx.invalid(KEY_KEY, format!("not set; {CERT_KEY} needs it"))),
            }
        }
        (true, false) => client_secret(ctx, a),
        (false, false) => from_credentials_directory(ctx, a),
    }
}

fn client_secret(ctx: &Ctx<'_>, a: &AzureSection) -> Result<AzureCredential, ConfigError> {
    let spec = SecretSpec {
        key: "azure.client_secret",
        file_key: "azure.client_secret_file",
        credential: SECRET_CREDENTIAL,
        inline: a.client_secret.as_ref(),
        file: a.client_secret_file.as_deref().map(|p| ctx.path(p)),
    };
    secret::resolve(spec, ctx.path, ctx.env, &|k| ctx.at(k)).map(AzureCredential::Secret)
}

/// Nothing written in the file: systemd credentials, a secret or a certificate, not both.
fn from_credentials_directory(
    ctx: &Ctx<'_>,
    a: &AzureSection,
) -> Result<AzureCredential, ConfigError> {
    let present = |name: &str| credential_file(ctx.env, name);
    let secret = present(SECRET_CREDENTIAL);
    let (cert, key) = (present(CERT_CREDENTIAL), present(KEY_CREDENTIAL));
    match (secret, cert, key) {
        (Some(_), None, None) => client_secret(ctx, a),
        (None, Some(cert), Some(key)) => certificate(ctx, cert, key),
        (Some(_), _, _) => Err(ctx.invalid(
            "azure.client_secret",
            format!(
                "the systemd credentials \"{SECRET_CREDENTIAL}\" and \"{CERT_CREDENTIAL}\"/\
                 \"{KEY_CREDENTIAL}\" are both passed; pass a client secret or a certificate, \
                 not both"
            ),
        )),
        (None, Some(_), None) => Err(ctx.invalid(
            KEY_KEY,
            format!("the systemd credential \"{KEY_CREDENTIAL}\" is missing (\"{CERT_CREDENTIAL}\" needs it)"),
        )),
        (None, None, Some(_)) => Err(ctx.invalid(
            CERT_KEY,
            format!("the systemd credential \"{CERT_CREDENTIAL}\" is missing (\"{KEY_CREDENTIAL}\" needs it)"),
        )),
        // Neither: the client secret's own message, which names every place it may come
        // from, and the certificate as the other choice.
        (None, None, None) => client_secret(ctx, a).map_err(|e| match e {
            ConfigError::Invalid { path, at, reason } => ConfigError::Invalid {
                path,
                at,
                reason: format!(
                    "{reason}; or use a certificate: {CERT_KEY} and {KEY_KEY} (systemd \
                     credentials \"{CERT_CREDENTIAL}\" and \"{KEY_CREDENTIAL}\")"
                ),
            },
            other => other,
        }),
    }
}

/// Reads both PEM files and checks that the key is the certificate's.
fn certificate(
    ctx: &Ctx<'_>,
    cert_file: PathBuf,
    key_file: PathBuf,
) -> Result<AzureCredential, ConfigError> {
    let bad = |key: &str, file: &Path, why: &dyn std::fmt::Display| {
        ctx.invalid(key, format!("{}: {why}", file.display()))
    };
    let cert_pem =
        std::fs::read_to_string(&cert_file).map_err(|e| bad(CERT_KEY, &cert_file, &e))?;
    let key_pem = Zeroizing::new(
        std::fs::read_to_string(&key_file).map_err(|e| bad(KEY_KEY, &key_file, &e))?,
    );
    let certificate = ClientCertificate::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
        CertificateError::Certificate(_) => bad(CERT_KEY, &cert_file, &e),
        CertificateError::Key(_) => bad(KEY_KEY, &key_file, &e),
        CertificateError::Mismatch => ctx.invalid(
            KEY_KEY,
            format!(
                "the private key in {} does not belong to the certificate in {}",
                key_file.display(),
                cert_file.display()
            ),
        ),
    })?;
    Ok(AzureCredential::Certificate(CertificateCredential {
        certificate_file: cert_file,
        key_file,
        certificate: Arc::new(certificate),
    }))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::sync::OnceLock;

    use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};

    use crate::config::Config;

    use super::*;

    const AZURE: &str = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\n";

    /// A certificate (rcgen) and its PKCS#8 key, PEM, made once.
    fn pems() -> &'static (String, String) {
        static PEMS: OnceLock<(String, String)> = OnceLock::new();
        PEMS.get_or_init(|| {
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
            let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
            let pair =
                rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
                    .unwrap();
            let params = rcgen::CertificateParams::new(vec!["app".to_owned()]).unwrap();
            (params.self_signed(&pair).unwrap().pem(), key_pem)
        })
    }

    /// A config directory with `cert.pem` and `key.pem`.
    fn dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), &pems().0).unwrap();
        std::fs::write(dir.path().join("key.pem"), &pems().1).unwrap();
        dir
    }

    fn load(dir: &Path, text: &str, creds: Option<&Path>) -> Result<Config, String> {
        let creds = creds.map(|p| p.as_os_str().to_owned());
        let env = move |k: &str| -> Option<OsString> {
            (k == "CREDENTIALS_DIRECTORY")
                .then(|| creds.clone())
                .flatten()
        };
        let text = format!("{AZURE}{text}\n[pbx]\ntoken = \"pbx-token\"\n");
        Config::from_str_with(&text, &dir.join("config.toml"), &env).map_err(|e| e.to_string())
    }

    fn certificate_of(c: &Config) -> &CertificateCredential {
        match &c.azure.credential {
            AzureCredential::Certificate(c) => c,
            AzureCredential::Secret(_) => panic!("a secret, not a certificate"),
        }
    }

    #[test]
    fn certificate_files_are_read_relative_to_the_config() {
        let d = dir();
        let text = "client_certificate_file = \"cert.pem\"\nclient_key_file = \"key.pem\"\n";
        let c = load(d.path(), text, None).unwrap();
        let cert = certificate_of(&c);
        assert_eq!(cert.certificate_file, d.path().join("cert.pem"));
        assert_eq!(cert.key_file, d.path().join("key.pem"));
        assert_eq!(cert.certificate.subject(), "CN=rcgen self signed cert");
    }

    #[test]
    fn a_secret_and_a_certificate_together_name_both_keys() {
        let d = dir();
        let text = "client_secret = \"s\"\nclient_certificate_file = \"cert.pem\"\nclient_key_file = \"key.pem\"\n";
        let e = load(d.path(), text, None).unwrap_err();
        for part in [
            "config.toml",
            "azure.client_secret (line 4)",
            "azure.client_certificate_file",
            "azure.client_key_file",
            "not both",
        ] {
            assert!(e.contains(part), "{part} missing in {e}");
        }
        assert!(!e.contains("\"s\""), "{e}");
    }

    #[test]
    fn half_a_certificate_names_the_missing_key() {
        let d = dir();
        let e = load(d.path(), "client_certificate_file = \"cert.pem\"\n", None).unwrap_err();
        assert!(e.contains("azure.client_key_file: not set"), "{e}");
        let e = load(d.path(), "client_key_file = \"key.pem\"\n", None).unwrap_err();
        assert!(e.contains("azure.client_certificate_file: not set"), "{e}");
    }

    #[test]
    fn bad_files_name_their_key_and_file_never_the_key() {
        let d = dir();
        std::fs::write(d.path().join("other.pem"), "not a pem\n").unwrap();
        let text = "client_certificate_file = \"other.pem\"\nclient_key_file = \"key.pem\"\n";
        let e = load(d.path(), text, None).unwrap_err();
        assert!(e.contains("azure.client_certificate_file (line 4)"), "{e}");
        assert!(e.contains("other.pem: certificate:"), "{e}");
        // The certificate given as the key: no private key in it.
        let text = "client_certificate_file = \"cert.pem\"\nclient_key_file = \"cert.pem\"\n";
        let e = load(d.path(), text, None).unwrap_err();
        assert!(
            e.contains("azure.client_key_file (line 5)") && e.contains("private key"),
            "{e}"
        );
        let text = "client_certificate_file = \"cert.pem\"\nclient_key_file = \"gone.pem\"\n";
        let e = load(d.path(), text, None).unwrap_err();
        assert!(
            e.contains("azure.client_key_file") && e.contains("gone.pem"),
            "{e}"
        );
        let key_body = pems().1.lines().nth(1).unwrap();
        assert!(!e.contains(key_body));
    }

    #[test]
    fn systemd_credentials_give_a_certificate() {
        let d = dir();
        let creds = tempfile::tempdir().unwrap();
        std::fs::copy(
            d.path().join("cert.pem"),
            creds.path().join("client-certificate"),
        )
        .unwrap();
        std::fs::copy(d.path().join("key.pem"), creds.path().join("client-key")).unwrap();
        let c = load(d.path(), "", Some(creds.path())).unwrap();
        assert_eq!(
            certificate_of(&c).certificate_file,
            creds.path().join("client-certificate")
        );
        // With the client secret passed too, neither is chosen.
        std::fs::write(creds.path().join("client-secret"), "s\n").unwrap();
        let e = load(d.path(), "", Some(creds.path())).unwrap_err();
        assert!(
            e.contains("client-secret") && e.contains("client-certificate"),
            "{e}"
        );
        // The key alone is not enough.
        std::fs::remove_file(creds.path().join("client-secret")).unwrap();
        std::fs::remove_file(creds.path().join("client-certificate")).unwrap();
        let e = load(d.path(), "", Some(creds.path())).unwrap_err();
        assert!(e.contains("\"client-certificate\" is missing"), "{e}");
    }

    #[test]
    fn nothing_set_offers_the_certificate_too() {
        let d = dir();
        let e = load(d.path(), "", None).unwrap_err();
        for part in [
            "azure.client_secret",
            "LoadCredential=client-secret",
            "azure.client_certificate_file and azure.client_key_file",
        ] {
            assert!(e.contains(part), "{part} missing in {e}");
        }
    }
}
