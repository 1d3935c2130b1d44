//! The daemon's side of encrypted ("rich") change notifications for presence. Sources: rich
//! notifications <https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>
//! and creating a subscription
//! <https://learn.microsoft.com/en-us/graph/api/subscription-post-subscriptions>.
//!
//! A presence subscription with `includeResourceData=true` sends Graph a certificate
//! (`encryptionCertificate`, base64 DER, public key only) and a label of our choosing
//! (`encryptionCertificateId`). Graph then encrypts each notification's resource data with a
//! fresh AES-256 key, wraps that key with the certificate's RSA key, and signs the ciphertext
//! with HMAC-SHA256 under the AES key. This module holds the key pairs ([`KeyStore`],
//! [`NotifyKeys`]) and undoes Graph's encryption ([`decrypt`]):
//!
//! 1. the key is picked by `encryptionCertificateId`;
//! 2. `dataKey` is RSA-OAEP (SHA-1, MGF1 SHA-1) decrypted to a 32-byte AES key;
//! 3. HMAC-SHA256 of the decoded `data` under that key must equal `dataSignature` (compared in
//!    constant time); nothing is decrypted otherwise;
//! 4. `data` is AES-256-CBC decrypted with PKCS#7 padding, IV = the first 16 bytes of the key;
//! 5. the plaintext is the presence as JSON.
//!
//! Keys live in files in one directory (the state database's): the current key pair and the
//! previous one, so that notifications encrypted for the previous certificate, still in flight
//! while subscriptions move over, can be read. It is an adapter like the rest of `graph/`: no
//! config, no store, and the time is a parameter.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt as _, KeyIvInit as _};
use hmac::{Hmac, KeyInit as _, Mac as _};
use rsa::PrivateKey;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{self, Builder as _, CertificateBuilder};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::{Extension, ToExtension as _};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

/// Size of the RSA keys this module makes; Graph takes 2,048 to 4,096 bits (create
/// subscription page).
pub const KEY_BITS: usize = 2048;

/// How long a new certificate is valid.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Start of every certificate id; the rest is the start of the thumbprint.
pub const CERTIFICATE_ID_PREFIX: &str = "pbx-teams-presence-";

/// The current key pair and certificate, in the key directory.
pub const CURRENT_FILE: &str = "graph-notify-current.pem";

/// The key pair that was current before the last rotation.
pub const PREVIOUS_FILE: &str = "graph-notify-previous.pem";

/// Subject (and issuer) of the self-signed certificates.
const SUBJECT: &str = "CN=pbx-teams-presence change notifications";

/// `notBefore` lies this far before the creation time, for clocks that run a little behind.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// AES-256 key length; Graph's samples use aes-256-cbc (rich notifications page).
const AES_KEY_LEN: usize = 32;

/// AES block (and IV) length.
const IV_LEN: usize = 16;

/// Longest certificate id we accept or repeat in an error (create subscription page).
const MAX_ID_CHARS: usize = 128;

/// What can go wrong with the keys or a notification. No variant carries key material,
/// ciphertext or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The notification names a certificate id this daemon has no key for (any more): the
    /// subscription was made by another instance, or with a key older than the previous one.
    #[error("no key for certificate id {0:?}")]
    UnknownCertificate(String),
    /// A field of `encryptedContent` is not valid base64.
    #[error("encryptedContent.{0} is not valid base64")]
    BadBase64(&'static str),
    /// `dataKey` does not decrypt with our private key (RSA-OAEP SHA-1): it was encrypted for
    /// another certificate, or altered.
    #[error("dataKey does not decrypt with the private key")]
    KeyDecrypt,
    /// `dataKey` decrypted to a key that is not 32 bytes (AES-256).
    #[error("dataKey holds a {0}-byte key, expected {AES_KEY_LEN}")]
    BadKeyLength(usize),
    /// HMAC-SHA256 of `data` does not match `dataSignature`; the data was not decrypted.
    #[error("dataSignature does not match data; not decrypted")]
    SignatureMismatch,
    /// AES-256-CBC decryption failed (length or PKCS#7 padding).
    #[error("data does not decrypt (length or padding)")]
    Decrypt,
    /// The decrypted data is not the presence JSON expected.
    #[error("decrypted data is not presence JSON")]
    BadJson,
    /// Making a key pair or certificate failed (random source, encoding).
    #[error("cannot make a notification key: {0}")]
    Generate(String),
    /// Reading or writing a key file failed.
    #[error("notification key file {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// The `encryptedContent` of one rich notification item, as Graph sends it (rich notifications
/// page; <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedContent {
    /// Base64 AES-256-CBC ciphertext of the resource data.
    pub data: String,
    /// Base64 HMAC-SHA256 of the decoded `data`, keyed with the AES key.
    pub data_signature: String,
    /// Base64 RSA-OAEP (SHA-1) encryption of the AES key.
    pub data_key: String,
    /// Our label of the certificate used, as sent in the subscription.
    pub encryption_certificate_id: String,
    /// Hex SHA-1 thumbprint of that certificate (informational; the id picks the key).
    #[serde(default)]
    pub encryption_certificate_thumbprint: String,
}

/// The decrypted resource data of a presence notification. Other fields (`@odata.id`,
/// `@odata.type`, and whatever Graph adds) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptedPresence {
    /// The user's Entra object id.
    pub id: String,
    /// E.g. `Available`, `Busy`.
    pub availability: String,
    /// E.g. `InACall`, `InAMeeting`.
    pub activity: String,
}

/// One RSA key pair and its self-signed certificate.
#[derive(Clone)]
pub struct NotifyKeys {
    private_key: PrivateKey,
    cert_der: Vec<u8>,
    thumbprint: String,
    certificate_id: String,
    expires_at: SystemTime,
}

impl fmt::Debug for NotifyKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyKeys")
            .field("certificate_id", &self.certificate_id)
            .field("thumbprint", &self.thumbprint)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl NotifyKeys {
    /// A new [`KEY_BITS`]-bit RSA key pair and a certificate valid from `now` (backdated an
    /// hour for clock skew) for `valid_for`.
    ///
    /// Slow (RSA key generation, 0.1 to 2 s): call it from `spawn_blocking`.
    pub fn generate(now: SystemTime, valid_for: Duration) -> Result<NotifyKeys, CryptoError> {
        let fail = |what: &str, e: &dyn fmt::Display| CryptoError::Generate(format!("{what}: {e}"));
        let private_key =
            PrivateKey::new(&mut getrandom::SysRng, KEY_BITS).map_err(|e| fail("RSA key", &e))?;
        let spki = SubjectPublicKeyInfoOwned::from_key(&private_key.to_public_key())
            .map_err(|e| fail("public key", &e))?;

        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| fail("random serial", &e))?;
        serial[0] = (serial[0] & 0x7f) | 0x40; // positive, no leading zero byte
        let serial = SerialNumber::new(&serial).map_err(|e| fail("serial", &e))?;

        let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
        let not_after = now
            .checked_add(valid_for)
            .ok_or_else(|| CryptoError::Generate("validity too long".into()))?;
        let time = |t: SystemTime| Time::try_from(t).map_err(|e| fail("validity", &e));
        let validity = Validity::new(time(not_before)?, time(not_after)?);

        let subject = Name::from_str(SUBJECT).map_err(|e| fail("subject", &e))?;
        let builder = CertificateBuilder::new(SelfSigned { subject }, serial, validity, spki)
            .map_err(|e| fail("certificate", &e))?;
        let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(private_key.clone());
        let cert = builder
            .build::<_, rsa::pkcs1v15::Signature>(&signer)
            .map_err(|e| fail("certificate", &e))?;
        let cert_der = cert.to_der().map_err(|e| fail("certificate", &e))?;
        NotifyKeys::from_parts(private_key, cert_der).map_err(CryptoError::Generate)
    }

    /// The label sent as `encryptionCertificateId`: [`CERTIFICATE_ID_PREFIX`] and the first 16
    /// hex digits of the thumbprint, so it changes with every key.
    pub fn certificate_id(&self) -> &str {
        &self.certificate_id
    }

    /// The certificate as base64 DER: the subscription's `encryptionCertificate`.
    pub fn certificate_base64(&self) -> String {
        BASE64.encode(&self.cert_der)
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Uppercase hex SHA-1 of the certificate's DER (what Graph sends back as
    /// `encryptionCertificateThumbprint`).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The certificate's `notAfter` (whole seconds).
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Checks that the certificate belongs to the key and describes it; the reason otherwise.
    fn from_parts(private_key: PrivateKey, cert_der: Vec<u8>) -> Result<NotifyKeys, String> {
        let cert = Certificate::from_der(&cert_der).map_err(|e| format!("certificate: {e}"))?;
        let tbs = cert.tbs_certificate();
        let cert_spki = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|e| format!("certificate public key: {e}"))?;
        let key_spki = private_key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| format!("public key: {e}"))?;
        if cert_spki != key_spki.as_bytes() {
            return Err("the certificate is not for this private key".into());
        }
        let bits = private_key.size() * 8;
        if !(2048..=4096).contains(&bits) {
            return Err(format!("{bits}-bit key; Graph takes 2048 to 4096 bits"));
        }
        let expires_at = tbs.validity().not_after.to_system_time();
        let thumbprint = hex_upper(&Sha1::digest(&cert_der));
        let certificate_id = format!("{CERTIFICATE_ID_PREFIX}{}", &thumbprint[..16]);
        Ok(NotifyKeys {
            private_key,
            cert_der,
            thumbprint,
            certificate_id,
            expires_at,
        })
    }

    /// The key file's content: the PKCS#8 private key and the certificate, PEM.
    fn to_pem(&self) -> Result<Zeroizing<String>, CryptoError> {
        let key = self
            .private_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| CryptoError::Generate(format!("private key PEM: {e}")))?;
        let cert =
            x509_cert::der::pem::encode_string("CERTIFICATE", LineEnding::LF, &self.cert_der)
                .map_err(|e| CryptoError::Generate(format!("certificate PEM: {e}")))?;
        let mut pem = Zeroizing::new(String::with_capacity(key.len() + cert.len()));
        pem.push_str(&key);
        pem.push_str(&cert);
        Ok(pem)
    }

    /// Reads what [`NotifyKeys::to_pem`] wrote; the reason it cannot otherwise.
    fn from_pem(text: &str) -> Result<NotifyKeys, String> {
        let key = pem_block(text, "PRIVATE KEY").ok_or("no PRIVATE KEY block")?;
        let cert = pem_block(text, "CERTIFICATE").ok_or("no CERTIFICATE block")?;
        let private_key =
            PrivateKey::from_pkcs8_pem(key).map_err(|e| format!("private key: {e}"))?;
        let (_, cert_der) = x509_cert::der::pem::decode_vec(cert.as_bytes())
            .map_err(|e| format!("certificate PEM: {e}"))?;
        NotifyKeys::from_parts(private_key, cert_der)
    }
}

/// A self-signed end-entity certificate for key encipherment; Graph only reads its public key.
struct SelfSigned {
    subject: Name,
}

impl BuilderProfile for SelfSigned {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &x509_cert::TbsCertificate,
    ) -> builder::Result<Vec<Extension>> {
        let mut extensions = Vec::new();
        let basic = BasicConstraints {
            ca: false,
            path_len_constraint: None,
        };
        extensions.push(basic.to_extension(tbs.subject(), &extensions)?);
        let usage = KeyUsage(KeyUsages::KeyEncipherment | KeyUsages::DataEncipherment);
        extensions.push(usage.to_extension(tbs.subject(), &extensions)?);
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        extensions.push(ski.to_extension(tbs.subject(), &extensions)?);
        Ok(extensions)
    }
}

/// Decrypts one notification's `encryptedContent` into the presence it carries, checking its
/// signature first (rich notifications page).
///
/// Costs about 1.6 ms in a release build, nearly all of it the RSA private-key operation, and
/// anyone who can reach the notification URL can make us spend it: check `clientState` first,
/// and decrypt a batch of items in `spawn_blocking` rather than on the runtime.
pub fn decrypt(
    keys: &KeyStore,
    content: &EncryptedContent,
) -> Result<DecryptedPresence, CryptoError> {
    let id = &content.encryption_certificate_id;
    let Some(notify_keys) = keys.get(id) else {
        let shown = id
            .chars()
            .take(MAX_ID_CHARS)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        return Err(CryptoError::UnknownCertificate(shown));
    };
    let wrapped_key = base64_field("dataKey", &content.data_key)?;
    let signature = base64_field("dataSignature", &content.data_signature)?;
    let mut data = Zeroizing::new(base64_field("data", &content.data)?);

    let key = Zeroizing::new(
        notify_keys
            .private_key
            .oaep_decrypt::<Sha1>(&wrapped_key)
            .map_err(|_| CryptoError::KeyDecrypt)?,
    );
    if key.len() != AES_KEY_LEN {
        return Err(CryptoError::BadKeyLength(key.len()));
    }

    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).map_err(|_| CryptoError::BadKeyLength(key.len()))?;
    mac.update(&data);
    mac.verify_slice(&signature)
        .map_err(|_| CryptoError::SignatureMismatch)?;

    let plain = cbc::Decryptor::<Aes256>::new_from_slices(&key, &key[..IV_LEN])
        .map_err(|_| CryptoError::BadKeyLength(key.len()))?
        .decrypt_padded::<Pkcs7>(&mut data)
        .map_err(|_| CryptoError::Decrypt)?;
    serde_json::from_slice(plain).map_err(|_| CryptoError::BadJson)
}

fn base64_field(field: &'static str, value: &str) -> Result<Vec<u8>, CryptoError> {
    BASE64
        .decode(value.trim())
        .map_err(|_| CryptoError::BadBase64(field))
}

/// The PEM block with `label` in `text`, markers included.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = start + text[start..].find(&end)? + end.len();
    Some(&text[start..stop])
}

fn hex_upper(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
}

#[path = "notify_keys.rs"]
mod keys;
pub use keys::KeyStore;
#[cfg(test)]
use keys::write_keys;

#[cfg(test)]
#[path = "notify_crypto_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "notify_crypto_decrypt_tests.rs"]
mod decrypt_tests;
