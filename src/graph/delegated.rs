//! Delegated tokens for subscription accounts: the device-code sign-in that `login` runs once
//! per account, and the refresh-token grant the daemon uses from then on. Graph takes
//! presence subscriptions only with a delegated token
//! (<https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>).
//!
//! No client secret is sent on these grants: the app registration must allow public client
//! flows (device code), and Entra refuses a secret from a public client (AADSTS700025).
//! Scopes: `Presence.Read.All` (what presence subscriptions need, same page) and `offline_access`
//! (for the refresh token).

use std::fmt;
use std::time::Duration;

use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{
    AsyncHttpClient, AuthType, ClientId, DeviceAuthorizationUrl, DeviceCodeErrorResponseType,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, RefreshToken, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, StandardErrorResponse, StandardRevocableToken,
    TokenResponse, TokenUrl,
};
use url::Url;

use super::aadsts::{explain_aadsts, extract_aadsts};
use super::auth::{AadError, Bearer};
use super::error::error_chain;
use super::{GraphError, join};

/// What the daemon needs to talk to the token endpoint for an account.
#[derive(Clone)]
pub struct DelegatedSettings {
    pub login_url: Url,
    pub graph_url: Url,
    pub tenant_id: String,
    pub client_id: String,
    pub request_timeout: Duration,
}

/// A fresh delegated grant: the access token and the (rotated) refresh token.
pub struct Grant {
    pub access_token: Bearer,
    /// Keep it; the previous one may stop working once this one is issued.
    pub refresh_token: Option<String>,
    pub expires_in: Duration,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// What `login` shows the admin.
pub struct DeviceLogin {
    pub user_code: String,
    pub verification_uri: String,
    pub message: Option<String>,
    pub expires_in: Duration,
    details: StandardDeviceAuthorizationResponse,
}

type DeviceClient = oauth2::Client<
    AadError,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The token endpoint for delegated grants.
pub struct Delegated {
    oauth: DeviceClient,
    scopes: Vec<Scope>,
    http: reqwest::Client,
}

impl Delegated {
    pub fn new(s: &DelegatedSettings) -> Result<Delegated, GraphError> {
        let base = [&s.tenant_id[..], "oauth2", "v2.0"];
        let token_url = join(&s.login_url, &[base[0], base[1], base[2], "token"])?;
        let device_url = join(&s.login_url, &[base[0], base[1], base[2], "devicecode"])?;
        let oauth = oauth2::Client::new(ClientId::new(s.client_id.clone()))
            .set_device_authorization_url(DeviceAuthorizationUrl::from_url(device_url))
            .set_token_uri(TokenUrl::from_url(token_url))
            .set_auth_type(AuthType::RequestBody);
        let graph = s.graph_url.as_str().trim_end_matches('/');
        let scopes = vec![
            Scope::new(format!("{graph}/Presence.Read.All")),
            Scope::new("offline_access".into()),
        ];
        let http = reqwest::Client::builder()
            .timeout(s.request_timeout)
            // Token endpoints must not redirect (oauth2's advice against SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| GraphError::InvalidSettings(error_chain(&e)))?;
        Ok(Delegated {
            oauth,
            scopes,
            http,
        })
    }

    /// Step 1 of `login`: a code for the admin to enter at the verification URL.
    pub async fn start_device_login(&self) -> Result<DeviceLogin, GraphError> {
        let details: StandardDeviceAuthorizationResponse = self
            .oauth
            .exchange_device_code()
            .add_scopes(self.scopes.clone())
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(aad) => aad.into_error(),
                other => GraphError::InvalidResponse(format!("device code request: {other}")),
            })?;
        Ok(DeviceLogin {
            user_code: details.user_code().secret().clone(),
            verification_uri: details.verification_uri().to_string(),
            message: None,
            expires_in: details.expires_in(),
            details,
        })
    }

    /// Step 2: wait (polling at the interval Entra asked for) until the account signed in.
    pub async fn finish_device_login(&self, login: &DeviceLogin) -> Result<Grant, GraphError> {
        let answer = self
            .oauth
            .exchange_device_access_token(&login.details)
            .request_async(&self.http, tokio::time::sleep, Some(login.expires_in))
            .await
            .map_err(device_error)?;
        Ok(grant(&answer))
    }

    /// A new access token for an account from its refresh token. A revoked or expired
    /// refresh token is `Credentials` with Entra's AADSTS code: the account must `login` again.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Grant, GraphError> {
        let token = RefreshToken::new(refresh_token.to_owned());
        let send = |request: HttpRequest| {
            let http = self.http.clone();
            async move {
                let response: HttpResponse = http.call(request).await?;
                Ok::<_, oauth2::HttpClientError<reqwest::Error>>(response)
            }
        };
        let answer = self
            .oauth
            .exchange_refresh_token(&token)
            .add_scopes(self.scopes.clone())
            .request_async(&send)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(aad) => aad.into_error(),
                RequestTokenError::Request(e) => GraphError::Transport(error_chain(&e)),
                other => GraphError::InvalidResponse(format!("refresh token grant: {other}")),
            })?;
        Ok(grant(&answer))
    }
}

fn grant(answer: &BasicTokenResponse) -> Grant {
    Grant {
        access_token: Bearer::new(answer.access_token().secret()),
        refresh_token: answer.refresh_token().map(|r| r.secret().clone()),
        expires_in: answer
            .expires_in()
            .unwrap_or(Duration::from_secs(600))
            .min(Duration::from_secs(24 * 3600)),
    }
}

fn device_error<E: std::error::Error + 'static>(
    e: RequestTokenError<E, StandardErrorResponse<DeviceCodeErrorResponseType>>,
) -> GraphError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let description = r.error_description().cloned().unwrap_or_default();
            let aadsts = extract_aadsts(&description);
            let hint = match r.error() {
                DeviceCodeErrorResponseType::AccessDenied => "the sign-in was declined",
                DeviceCodeErrorResponseType::ExpiredToken => {
                    "the code expired before the sign-in; run login again"
                }
                _ => aadsts
                    .and_then(explain_aadsts)
                    .unwrap_or("see the AADSTS code in Entra's documentation"),
            };
            GraphError::Credentials {
                aadsts,
                error: r.error().to_string(),
                hint,
            }
        }
        RequestTokenError::Request(e) => GraphError::Transport(error_chain(&e)),
        other => GraphError::InvalidResponse(format!("device code sign-in: {other}")),
    }
}
