//! Tests of [`decrypt`]: it must undo what Graph does with our certificate (the fixtures'
//! `encrypt_for_test`, in `notify_crypto_tests.rs`) or say precisely why not.

use cbc::cipher::block_padding::NoPadding;

use super::tests::{
    PRESENCE_JSON, aes_cbc_encrypt, encrypt_for, encrypt_for_test, encrypt_with_key,
    expected_presence, key_a, key_b, random_bytes, resign, store,
};
use super::*;

#[test]
fn round_trip() {
    let keys = store(key_a(), None);
    let content = encrypt_for(keys.current(), PRESENCE_JSON.as_bytes());
    assert_eq!(decrypt(&keys, &content).unwrap(), expected_presence());
}

#[test]
fn encrypted_content_reads_graph_json() {
    let keys = store(key_a(), None);
    let content = encrypt_for(keys.current(), PRESENCE_JSON.as_bytes());
    let item = serde_json::json!({
        "subscriptionId": "2f7fd4bf-5f5e-4cd6-9e71-3f4f3b3b3a45",
        "changeType": "updated",
        "resource": "communications/presences/a8a2cb1e-bb5b-4e5a-b4df-9f8c9e1e7c11",
        "encryptedContent": {
            "data": content.data,
            "dataSignature": content.data_signature,
            "dataKey": content.data_key,
            "encryptionCertificateId": content.encryption_certificate_id,
            "encryptionCertificateThumbprint": content.encryption_certificate_thumbprint,
        }
    });
    let parsed: EncryptedContent =
        serde_json::from_value(item["encryptedContent"].clone()).unwrap();
    assert_eq!(parsed, content);
    assert_eq!(
        parsed.encryption_certificate_thumbprint,
        keys.current().thumbprint()
    );
    assert_eq!(decrypt(&keys, &parsed).unwrap(), expected_presence());
}

#[test]
fn tampered_data_is_a_signature_mismatch_and_not_decrypted() {
    let keys = store(key_a(), None);
    let content = encrypt_for(keys.current(), PRESENCE_JSON.as_bytes());

    let mut data = BASE64.decode(&content.data).unwrap();
    data[5] ^= 0x01;
    let flipped = EncryptedContent {
        data: BASE64.encode(&data),
        ..content.clone()
    };
    assert!(matches!(
        decrypt(&keys, &flipped),
        Err(CryptoError::SignatureMismatch)
    ));

    // Data that would decrypt to valid presence under the same key, with the old signature:
    // had it been decrypted before the check, this would succeed.
    let key = random_bytes::<32>();
    let original = encrypt_with_key(
        &keys.current().certificate_base64(),
        keys.current().certificate_id(),
        &key,
        PRESENCE_JSON.as_bytes(),
    );
    let other_json = PRESENCE_JSON.replace("Busy", "Away");
    let other = encrypt_with_key(
        &keys.current().certificate_base64(),
        keys.current().certificate_id(),
        &key,
        other_json.as_bytes(),
    );
    assert!(decrypt(&keys, &other).is_ok());
    let swapped = EncryptedContent {
        data: other.data,
        ..original
    };
    assert!(matches!(
        decrypt(&keys, &swapped),
        Err(CryptoError::SignatureMismatch)
    ));

    let mut signature = BASE64.decode(&content.data_signature).unwrap();
    signature[0] ^= 0x80;
    let bad_signature = EncryptedContent {
        data_signature: BASE64.encode(&signature),
        ..content.clone()
    };
    assert!(matches!(
        decrypt(&keys, &bad_signature),
        Err(CryptoError::SignatureMismatch)
    ));
    let short_signature = EncryptedContent {
        data_signature: BASE64.encode(&signature[..16]),
        ..content
    };
    assert!(matches!(
        decrypt(&keys, &short_signature),
        Err(CryptoError::SignatureMismatch)
    ));
}

#[test]
fn unknown_certificate_id() {
    let keys = store(key_a(), None);
    let mut content = encrypt_for(keys.current(), PRESENCE_JSON.as_bytes());
    content.encryption_certificate_id = "pbx-teams-presence-0000000000000000".into();
    match decrypt(&keys, &content) {
        Err(CryptoError::UnknownCertificate(id)) => {
            assert_eq!(id, "pbx-teams-presence-0000000000000000");
        }
        other => panic!("{other:?}"),
    }

    content.encryption_certificate_id = format!("evil\n{}", "x".repeat(10_000));
    match decrypt(&keys, &content) {
        Err(CryptoError::UnknownCertificate(id)) => {
            assert_eq!(id.chars().count(), MAX_ID_CHARS);
            assert!(id.starts_with("evil?x"), "{id}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn key_wrapped_for_another_certificate_is_a_key_decrypt_error() {
    let keys = store(key_a(), None);
    let other = key_b();
    // Encrypted for B's certificate but labelled with A's id.
    let content = encrypt_for_test(
        &other.certificate_base64(),
        keys.current().certificate_id(),
        PRESENCE_JSON.as_bytes(),
    );
    assert!(matches!(
        decrypt(&keys, &content),
        Err(CryptoError::KeyDecrypt)
    ));
}

#[test]
fn bad_base64_names_the_field() {
    let keys = store(key_a(), None);
    let content = encrypt_for(keys.current(), PRESENCE_JSON.as_bytes());
    type Field = fn(&mut EncryptedContent) -> &mut String;
    let cases: [(&str, Field); 3] = [
        ("data", |c| &mut c.data),
        ("dataSignature", |c| &mut c.data_signature),
        ("dataKey", |c| &mut c.data_key),
    ];
    for (name, field) in cases {
        for garbage in ["%%%not base64%%%", "QUJD=", "A", "ü"] {
            let mut bad = content.clone();
            *field(&mut bad) = garbage.into();
            match decrypt(&keys, &bad) {
                Err(CryptoError::BadBase64(f)) => assert_eq!(f, name),
                other => panic!("{name} = {garbage:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn truncated_or_odd_ciphertext_is_a_decrypt_error() {
    let keys = store(key_a(), None);
    let key = random_bytes::<32>();
    let content = encrypt_with_key(
        &keys.current().certificate_base64(),
        keys.current().certificate_id(),
        &key,
        PRESENCE_JSON.as_bytes(),
    );
    let data = BASE64.decode(&content.data).unwrap();

    // Truncated in transit: the signature no longer matches.
    let cut = EncryptedContent {
        data: BASE64.encode(&data[..data.len() - 5]),
        ..content.clone()
    };
    assert!(matches!(
        decrypt(&keys, &cut),
        Err(CryptoError::SignatureMismatch)
    ));

    // Signed as sent, but not whole blocks, or nothing at all.
    for len in [data.len() - 5, 15, 1, 0] {
        let odd = resign(&content, &key, &data[..len]);
        assert!(
            matches!(decrypt(&keys, &odd), Err(CryptoError::Decrypt)),
            "{len} bytes"
        );
    }

    // Whole blocks with bad padding: a last plaintext byte of 0 is never valid PKCS#7.
    let mut block = [0u8; 32];
    block[..16].copy_from_slice(&random_bytes::<16>());
    let bad_padding = aes_cbc_encrypt::<NoPadding>(&key, &block);
    let unpadded = resign(&content, &key, &bad_padding);
    assert!(matches!(
        decrypt(&keys, &unpadded),
        Err(CryptoError::Decrypt)
    ));
}

#[test]
fn wrong_key_length_is_refused() {
    let keys = store(key_a(), None);
    let content = encrypt_with_key(
        &keys.current().certificate_base64(),
        keys.current().certificate_id(),
        &random_bytes::<16>(),
        b"0123456789abcdef",
    );
    assert!(matches!(
        decrypt(&keys, &content),
        Err(CryptoError::BadKeyLength(16))
    ));
}

#[test]
fn plaintext_that_is_not_presence_is_bad_json_and_not_echoed() {
    let keys = store(key_a(), None);
    for plaintext in [
        "secret-looking text",
        r#"{"id":"x","availability":"Busy"}"#,
        r#"{"id":"x","availability":7,"activity":"InACall"}"#,
    ] {
        let content = encrypt_for(keys.current(), plaintext.as_bytes());
        let err = decrypt(&keys, &content).unwrap_err();
        assert!(matches!(err, CryptoError::BadJson), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("Busy"),
            "{shown}"
        );
    }
}

#[test]
fn errors_do_not_echo_content() {
    let keys = store(key_a(), None);
    let content = encrypt_for(keys.current(), PRESENCE_JSON.as_bytes());
    let mut tampered = content.clone();
    tampered.data_signature = BASE64.encode([0u8; 32]);
    let mut wrong_key = content.clone();
    wrong_key.data_key = BASE64.encode([7u8; 256]);
    for err in [
        decrypt(&keys, &tampered).unwrap_err(),
        decrypt(&keys, &wrong_key).unwrap_err(),
    ] {
        let shown = format!("{err} {err:?}");
        for secret in [&content.data, &content.data_key, &content.data_signature] {
            assert!(!shown.contains(secret.as_str()), "{shown}");
        }
    }
}

#[test]
fn random_input_never_panics() {
    let keys = store(key_a(), None);
    let id = keys.current().certificate_id().to_string();
    for len in [0usize, 1, 16, 31, 32, 33, 255, 256, 257, 512] {
        let mut bytes = vec![0u8; len];
        getrandom::fill(&mut bytes).unwrap();
        let b64 = BASE64.encode(&bytes);
        let content = EncryptedContent {
            data: b64.clone(),
            data_signature: b64.clone(),
            data_key: b64,
            encryption_certificate_id: id.clone(),
            encryption_certificate_thumbprint: String::new(),
        };
        assert!(decrypt(&keys, &content).is_err(), "{len}");
    }
}
