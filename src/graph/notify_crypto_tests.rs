//! Tests of `notify_crypto`'s keys, certificates and key files, and the fixtures the decryption
//! tests (`notify_crypto_decrypt_tests.rs`) share: [`encrypt_for_test`] does what Graph does
//! with our certificate, and [`decrypt`] must undo it or say precisely why not. RSA key
//! generation is the slow part (0.1 to 0.4 s in a debug build), so most tests share two keys
//! made once ([`pool`]); each test makes at most one key of its own.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::OnceLock;

use cbc::cipher::BlockModeEncrypt as _;
use cbc::cipher::block_padding::Padding;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;

use super::*;

pub(super) const PRESENCE_JSON: &str = r##"{
    "@odata.type": "#Microsoft.Graph.presence",
    "@odata.id": "communications/presences/a8a2cb1e-bb5b-4e5a-b4df-9f8c9e1e7c11",
    "id": "a8a2cb1e-bb5b-4e5a-b4df-9f8c9e1e7c11",
    "availability": "Busy",
    "activity": "InACall",
    "statusMessage": null
}"##;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The time the shared keys were made at.
fn pool_time() -> SystemTime {
    pool().0
}

/// Two key pairs made once for all tests, with their creation time.
fn pool() -> &'static (SystemTime, NotifyKeys, NotifyKeys) {
    static POOL: OnceLock<(SystemTime, NotifyKeys, NotifyKeys)> = OnceLock::new();
    POOL.get_or_init(|| {
        let now = crate::clock::wall_now();
        let a = NotifyKeys::generate(now, DEFAULT_VALIDITY).unwrap();
        let b = NotifyKeys::generate(now, DEFAULT_VALIDITY).unwrap();
        (now, a, b)
    })
}

pub(super) fn key_a() -> NotifyKeys {
    pool().1.clone()
}

pub(super) fn key_b() -> NotifyKeys {
    pool().2.clone()
}

pub(super) fn store(current: NotifyKeys, previous: Option<NotifyKeys>) -> KeyStore {
    KeyStore {
        current,
        previous,
        rotated: false,
    }
}

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

/// What Graph does with the subscription's certificate (base64 DER) and the resource data: a
/// fresh AES-256 key, IV = its first 16 bytes, AES-256-CBC with PKCS#7, HMAC-SHA256 of the
/// ciphertext bytes under the key, and the key RSA-OAEP (SHA-1) encrypted for the
/// certificate's public key
/// (<https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>).
pub(super) fn encrypt_for_test(
    certificate_base64: &str,
    certificate_id: &str,
    plaintext: &[u8],
) -> EncryptedContent {
    encrypt_with_key(
        certificate_base64,
        certificate_id,
        &random_bytes::<32>(),
        plaintext,
    )
}

/// [`encrypt_for_test`] with a given symmetric key (any length of at least 16 bytes is wrapped;
/// only a 32-byte key encrypts the data for real).
pub(super) fn encrypt_with_key(
    certificate_base64: &str,
    certificate_id: &str,
    key: &[u8],
    plaintext: &[u8],
) -> EncryptedContent {
    let cert_der = BASE64.decode(certificate_base64).unwrap();
    let cert = Certificate::from_der(&cert_der).unwrap();
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap();
    let public_key = rsa::PublicKey::from_public_key_der(&spki).unwrap();

    let data = if key.len() == 32 {
        aes_cbc_encrypt::<Pkcs7>(key, plaintext)
    } else {
        plaintext.to_vec()
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(&data);
    let signature = mac.finalize().into_bytes();
    let data_key = public_key.oaep_encrypt::<Sha1>(key).unwrap();
    EncryptedContent {
        data: BASE64.encode(&data),
        data_signature: BASE64.encode(signature),
        data_key: BASE64.encode(&data_key),
        encryption_certificate_id: certificate_id.to_string(),
        encryption_certificate_thumbprint: hex_upper(&Sha1::digest(&cert_der)),
    }
}

/// AES-256-CBC with IV = `key[..16]`, as Graph does.
pub(super) fn aes_cbc_encrypt<P: Padding>(key: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = plaintext.to_vec();
    buf.resize(plaintext.len() + 16, 0);
    cbc::Encryptor::<Aes256>::new_from_slices(key, &key[..16])
        .unwrap()
        .encrypt_padded::<P>(&mut buf, plaintext.len())
        .unwrap()
        .to_vec()
}

pub(super) fn encrypt_for(keys: &NotifyKeys, plaintext: &[u8]) -> EncryptedContent {
    encrypt_for_test(&keys.certificate_base64(), keys.certificate_id(), plaintext)
}

/// `content` with `data` replaced and `dataSignature` made to match it under `key`.
pub(super) fn resign(content: &EncryptedContent, key: &[u8], data: &[u8]) -> EncryptedContent {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    EncryptedContent {
        data: BASE64.encode(data),
        data_signature: BASE64.encode(mac.finalize().into_bytes()),
        ..content.clone()
    }
}

pub(super) fn expected_presence() -> DecryptedPresence {
    DecryptedPresence {
        id: "a8a2cb1e-bb5b-4e5a-b4df-9f8c9e1e7c11".into(),
        availability: "Busy".into(),
        activity: "InACall".into(),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn previous_key_still_decrypts_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let old = key_a();
    write_keys(dir.path(), &dir.path().join(CURRENT_FILE), &old).unwrap();

    let before = KeyStore::load_or_create(dir.path(), pool_time(), 30 * DAY).unwrap();
    assert!(!before.rotated);
    assert_eq!(before.current().certificate_id(), old.certificate_id());
    assert!(before.previous().is_none());

    // 340 days on, the certificate expires within 30 days: a new one is made (one key).
    let later = pool_time() + 340 * DAY;
    let after = KeyStore::load_or_create(dir.path(), later, 30 * DAY).unwrap();
    assert!(after.rotated);
    assert_ne!(after.current().certificate_id(), old.certificate_id());
    assert_eq!(
        after.previous().unwrap().certificate_id(),
        old.certificate_id()
    );
    assert!(after.current().expires_at() >= later + DEFAULT_VALIDITY - Duration::from_secs(1));

    let for_old = encrypt_for(&old, PRESENCE_JSON.as_bytes());
    let for_new = encrypt_for(after.current(), PRESENCE_JSON.as_bytes());
    assert_eq!(decrypt(&after, &for_old).unwrap(), expected_presence());
    assert_eq!(decrypt(&after, &for_new).unwrap(), expected_presence());

    // Read back from the files, nothing due: the same two keys, no rotation.
    let again = KeyStore::load_or_create(dir.path(), later, 30 * DAY).unwrap();
    assert!(!again.rotated);
    assert_eq!(again.current().thumbprint(), after.current().thumbprint());
    assert_eq!(again.previous().unwrap().thumbprint(), old.thumbprint());
    assert_eq!(decrypt(&again, &for_old).unwrap(), expected_presence());
    assert_eq!(decrypt(&again, &for_new).unwrap(), expected_presence());
}

#[test]
fn new_store_writes_one_private_file() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state");
    let now = pool_time();
    let created = KeyStore::load_or_create(&dir, now, 30 * DAY).unwrap();
    assert!(created.rotated);
    assert!(created.previous().is_none());
    assert_eq!(mode(&dir), 0o700);
    let file = dir.join(CURRENT_FILE);
    assert_eq!(mode(&file), 0o600);
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [CURRENT_FILE]);

    let text = fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    assert!(text.contains("-----BEGIN CERTIFICATE-----\n"));

    let loaded = KeyStore::load_or_create(&dir, now, 30 * DAY).unwrap();
    assert!(!loaded.rotated);
    assert_eq!(
        loaded.current().thumbprint(),
        created.current().thumbprint()
    );
    let content = encrypt_for(created.current(), PRESENCE_JSON.as_bytes());
    assert_eq!(decrypt(&loaded, &content).unwrap(), expected_presence());
}

#[test]
fn key_file_readable_by_others_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CURRENT_FILE);
    write_keys(dir.path(), &file, &key_a()).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let keys = KeyStore::load_or_create(dir.path(), pool_time(), 30 * DAY).unwrap();
    assert!(!keys.rotated);
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn corrupt_key_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CURRENT_FILE);
    let previous = key_b();
    write_keys(dir.path(), &dir.path().join(PREVIOUS_FILE), &previous).unwrap();
    fs::write(&file, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();

    let keys = KeyStore::load_or_create(dir.path(), pool_time(), 30 * DAY).unwrap();
    assert!(keys.rotated);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(keys.previous().unwrap().thumbprint(), previous.thumbprint());
    let reloaded = KeyStore::load_or_create(dir.path(), pool_time(), 30 * DAY).unwrap();
    assert!(!reloaded.rotated);
    assert_eq!(reloaded.current().thumbprint(), keys.current().thumbprint());
}

#[test]
fn unusable_files_are_ignored_without_making_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = key_a();
    let b = key_b();
    write_keys(dir.path(), &dir.path().join(CURRENT_FILE), &a).unwrap();

    // A previous file that is binary garbage, then one whose certificate is not its key's.
    fs::write(dir.path().join(PREVIOUS_FILE), [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    let keys = KeyStore::load_or_create(dir.path(), pool_time(), 30 * DAY).unwrap();
    assert!(!keys.rotated);
    assert!(keys.previous().is_none());

    let key_pem = a.private_key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let cert_pem =
        x509_cert::der::pem::encode_string("CERTIFICATE", LineEnding::LF, b.certificate_der())
            .unwrap();
    fs::write(
        dir.path().join(PREVIOUS_FILE),
        format!("{}{cert_pem}", key_pem.as_str()),
    )
    .unwrap();
    assert_eq!(
        NotifyKeys::from_pem(&format!("{}{cert_pem}", key_pem.as_str())).unwrap_err(),
        "the certificate is not for this private key"
    );
    let keys = KeyStore::load_or_create(dir.path(), pool_time(), 30 * DAY).unwrap();
    assert!(!keys.rotated);
    assert!(keys.previous().is_none());
    assert_eq!(keys.current().thumbprint(), a.thumbprint());
}

#[test]
fn unreadable_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    fs::write(&not_a_dir, "x").unwrap();
    match KeyStore::load_or_create(&not_a_dir.join("keys"), pool_time(), DAY) {
        Err(CryptoError::Io { path, .. }) => assert_eq!(path, not_a_dir.join("keys")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn certificate_is_x509_with_a_2048_bit_rsa_key_and_the_right_validity() {
    let (made_at, keys, _) = pool();
    let der = BASE64.decode(keys.certificate_base64()).unwrap();
    assert_eq!(der, keys.certificate_der());
    let cert = Certificate::from_der(&der).unwrap();
    let tbs = cert.tbs_certificate();

    let spki = tbs.subject_public_key_info();
    assert_eq!(
        spki.algorithm.oid,
        x509_cert::der::oid::db::rfc5912::RSA_ENCRYPTION
    );
    let public_key = rsa::PublicKey::from_public_key_der(&spki.to_der().unwrap()).unwrap();
    assert_eq!(public_key.size() * 8, 2048);
    assert!(public_key.n_bytes()[0] & 0x80 != 0, "full 2048-bit modulus");
    assert_eq!(&public_key, keys.private_key.as_ref());

    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let validity = tbs.validity();
    assert_eq!(
        secs(validity.not_after.to_system_time()),
        secs(*made_at + DEFAULT_VALIDITY)
    );
    assert_eq!(keys.expires_at(), validity.not_after.to_system_time());
    assert_eq!(
        secs(validity.not_before.to_system_time()),
        secs(*made_at - BACKDATE)
    );

    // Self-signed: issuer is subject and the signature verifies with its own key.
    assert_eq!(tbs.issuer(), tbs.subject());
    let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public_key);
    let signature = rsa::pkcs1v15::Signature::try_from(cert.signature().raw_bytes()).unwrap();
    verifier.verify(&tbs.to_der().unwrap(), &signature).unwrap();

    assert_eq!(keys.thumbprint(), hex_upper(&Sha1::digest(&der)));
    assert_eq!(keys.thumbprint().len(), 40);
    assert!(
        keys.thumbprint()
            .chars()
            .all(|c| matches!(c, '0'..='9' | 'A'..='F'))
    );
    assert_eq!(
        keys.certificate_id(),
        format!("pbx-teams-presence-{}", &keys.thumbprint()[..16])
    );
    assert!(keys.certificate_id().len() <= MAX_ID_CHARS);
    assert_ne!(keys.certificate_id(), pool().2.certificate_id());
}

#[test]
fn debug_never_shows_the_private_key() {
    let keys = store(key_a(), None);
    let shown = format!("{keys:?}");
    assert!(shown.contains(keys.current().certificate_id()), "{shown}");
    assert!(
        !shown.contains("PrivateKey") && !shown.contains("primes"),
        "{shown}"
    );
}
