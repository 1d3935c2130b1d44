//! Entra (AADSTS) error codes in words an administrator can act on, and the admin consent
//! link. Codes and `error` values, from the AADSTS reference:
//! <https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>.

use url::Url;

/// What an AADSTS code from the token endpoint means for this app's config, if we know it.
pub fn explain_aadsts(code: u32) -> Option<&'static str> {
    // Codes and meanings from the AADSTS reference above and issue reports
    // (https://github.com/databricks/databricks-sdk-go/issues/240 for 7000215,
    // https://github.com/vippsas/vipps-ecom-api/issues/183 for 700016). The client assertion
    // codes 700021, 700023 and 700027 are on
    // https://learn.microsoft.com/azure/developer/java/sdk/troubleshooting-authentication-service-principal
    // (the AADSTS reference lists 700023 as an invalid scope instead), 700024 in
    // https://github.com/AzureAD/microsoft-authentication-library-for-dotnet/issues/4951.
    let hint = match code {
        7000215 => "the client secret is wrong (use the secret VALUE, not its ID)",
        7000222 => "the client secret has expired: create a new one in the app registration",
        7000218 | 7000216 => {
            "no client secret or certificate was sent: set client_secret, or \
             client_certificate_file and client_key_file, in the config"
        }
        700016 => {
            "the client id is wrong, or the app is not registered in this tenant: check \
             client_id and tenant_id"
        }
        90002 => "the tenant does not exist: check tenant_id (a GUID or a verified domain)",
        70011 => {
            "the scope is invalid: graph_url must be the Graph host, e.g. https://graph.microsoft.com"
        }
        500011 => "the resource is not known in this tenant: check graph_url and the cloud",
        50012 | 700027 => {
            "Entra does not accept the certificate: upload it to the app registration \
             (Certificates & secrets; `check` shows its thumbprint), and use the key that \
             belongs to it"
        }
        700021 => "the client assertion names another app: check client_id",
        700023 => {
            "the client assertion is for another token endpoint: check tenant_id and login_url"
        }
        700024 => {
            "the client assertion is not within its valid time range: check this machine's \
             clock (NTP)"
        }
        50027 => "Entra could not read the client assertion (an invalid JWT)",
        900144 => "a required parameter is missing from the token request",
        90094 => "an administrator must grant consent for this app",
        _ => return None,
    };
    Some(hint)
}

/// A hint for a token error without a known AADSTS code, from the OAuth `error` field (listed
/// on the AADSTS reference above).
pub(crate) fn explain_oauth_error(error: &str) -> &'static str {
    match error {
        "invalid_client" => "the client id, secret or certificate is wrong",
        "unauthorized_client" => {
            "the app is not registered in this tenant: check client_id and tenant_id"
        }
        "invalid_scope" => "the scope is invalid: check graph_url",
        "invalid_request" | "invalid_tenant" => "check tenant_id",
        _ => "check tenant_id, client_id and the client credential",
    }
}

/// The AADSTS number at the start of an `error_description`
/// ("AADSTS7000215: Invalid client secret provided. ... Trace ID ..."), as the AADSTS
/// reference above shows it.
pub(crate) fn extract_aadsts(description: &str) -> Option<u32> {
    let start = description.find("AADSTS")? + "AADSTS".len();
    let digits: String = description[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The page where an administrator grants the app's application permissions:
/// `{login}/{tenant}/adminconsent?client_id=...`.
pub fn consent_url(login_url: &Url, tenant_id: &str, client_id: &str) -> Url {
    let mut url = login_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend([tenant_id, "adminconsent"]);
    }
    url.query_pairs_mut().append_pair("client_id", client_id);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_have_hints() {
        assert!(explain_aadsts(7000215).unwrap().contains("VALUE"));
        assert!(explain_aadsts(7000222).unwrap().contains("expired"));
        assert!(explain_aadsts(700016).unwrap().contains("client id"));
        assert!(explain_aadsts(90002).unwrap().contains("tenant"));
        assert!(
            explain_aadsts(7000218)
                .unwrap()
                .contains("no client secret")
        );
        assert!(explain_aadsts(70011).unwrap().contains("scope"));
        assert_eq!(explain_aadsts(1), None);
    }

    #[test]
    fn extracts_the_number_from_the_description() {
        let d = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent \
                 in the request is the client secret value. Trace ID: 1 Correlation ID: 2";
        assert_eq!(extract_aadsts(d), Some(7000215));
        assert_eq!(
            extract_aadsts("Error: AADSTS90002: Tenant 'x' not found."),
            Some(90002)
        );
        assert_eq!(extract_aadsts("no code here"), None);
        assert_eq!(extract_aadsts("AADSTS: nothing"), None);
    }

    #[test]
    fn consent_url_is_built_under_the_login_host() {
        let login = Url::parse("https://login.microsoftonline.com/").unwrap();
        let u = consent_url(&login, "contoso.onmicrosoft.com", "abc-123");
        assert_eq!(
            u.as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/adminconsent?client_id=abc-123"
        );
        let fake = Url::parse("http://127.0.0.1:8080/login").unwrap();
        let u = consent_url(&fake, "t", "a b");
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/login/t/adminconsent?client_id=a+b"
        );
    }

    #[test]
    fn oauth_errors_have_fallback_hints() {
        assert!(explain_oauth_error("invalid_client").contains("secret"));
        assert!(explain_oauth_error("whatever").contains("tenant_id"));
    }
}
