//! Certificate credentials for a test world (an RSA key and an rcgen certificate).

use std::time::Duration;

use super::{World, write_atomically};

impl World {
    /// Certificate credentials instead of the client secret: an RSA key and a self-signed
    /// certificate (rcgen, `CN=pbx-teams-presence test`) valid for `days` more days, written
    /// to `cert.pem` and `key.pem` and named in the config. The app is registered again with
    /// a secret nobody knows and this certificate, so only the certificate signs in. Returns
    /// the certificate's `x5t#S256`.
    pub fn use_certificate(&mut self, days: u32) -> String {
        use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
            .unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pbx-teams-presence test");
        let day = Duration::from_secs(86_400);
        params.not_before = (std::time::SystemTime::now() - day).into();
        params.not_after = (std::time::SystemTime::now() + days * day).into();
        let cert_pem = params.self_signed(&pair).unwrap().pem();
        write_atomically(&self.dir.path().join("cert.pem"), &cert_pem);
        write_atomically(&self.dir.path().join("key.pem"), &key_pem);
        let client = self.graph.client_id();
        self.graph.add_app(
            &client,
            "a secret nobody knows",
            graph_emulator::DEFAULT_ROLES,
        );
        let thumbprint = self
            .graph
            .add_app_certificate(&client, cert_pem.as_bytes())
            .unwrap();
        self.credential = Some(
            "client_certificate_file = \"cert.pem\"\nclient_key_file = \"key.pem\"".to_owned(),
        );
        self.write_config("");
        thumbprint
    }
}
