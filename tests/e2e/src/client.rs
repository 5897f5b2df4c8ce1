//! A user's client of the gateway: signup, login, profile, each call with its own
//! `X-Request-Id` (checked echoed) so its log records can be found in logging. Calls
//! answer `Err` with the status and body instead of panicking, so fault tests decide
//! what an error means.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// The password every test user has.
pub const PASSWORD: &str = "a long enough e2e passphrase 42";

/// A unique address at example.com starting with `prefix`.
pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// What a failed call saw.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The HTTP status, or `None` when no answer came.
    pub status: Option<StatusCode>,
    /// The body or the transport error.
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status}: {}", self.detail),
            None => write!(f, "no answer: {}", self.detail),
        }
    }
}

/// A JSON answer and the request id it was sent with.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The `X-Request-Id` sent (and echoed).
    pub request_id: String,
    /// The JSON body.
    pub body: Value,
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
}

/// A client of the gateway.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    gateway: String,
}

impl Client {
    /// A client connecting from 127.0.0.1.
    pub fn new(gateway: &str) -> Self {
        Self::from_address(gateway, Ipv4Addr::LOCALHOST)
    }

    /// A client connecting from `address` (any of 127.0.0.0/8 on Linux loopback): the
    /// gateway limits logins per client address, and many users sign up from many
    /// addresses.
    ///
    /// # Panics
    /// When the HTTP client cannot be built.
    pub fn from_address(gateway: &str, address: Ipv4Addr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .local_address(IpAddr::V4(address))
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            gateway: gateway.to_owned(),
        }
    }

    /// The `n`-th distinct loopback client address (127.0.1.0 and up, never 127.0.0.1).
    pub fn nth_address(n: u16) -> Ipv4Addr {
        let [high, low] = n.to_be_bytes();
        Ipv4Addr::new(127, 1 + high, low, 1)
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `<gateway><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// Sends `request` with a fresh request id named after `what`; `Ok` when the answer
    /// has status `expected` and a JSON body.
    ///
    /// # Errors
    /// Another status, no answer, or a body that is not JSON.
    ///
    /// # Panics
    /// When the gateway does not echo the request id.
    pub async fn call(
        &self,
        request: RequestBuilder,
        what: &str,
        expected: StatusCode,
    ) -> Result<Answer, Failure> {
        let request_id = format!("e2e-{what}-{}", uuid::Uuid::new_v4().simple());
        let response = request
            .header("x-request-id", &request_id)
            .send()
            .await
            .map_err(|e| Failure {
                status: None,
                detail: format!("{what}: {e}"),
            })?;
        let status = response.status();
        let echoed = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        assert_eq!(
            echoed.as_deref(),
            Some(request_id.as_str()),
            "{what}: the gateway echoes the request id ({status}: {text})"
        );
        if status != expected {
            return Err(Failure {
                status: Some(status),
                detail: format!("{what}: {text}"),
            });
        }
        let body = serde_json::from_str(&text).map_err(|e| Failure {
            status: Some(status),
            detail: format!("{what}: not JSON ({e}): {text}"),
        })?;
        Ok(Answer { request_id, body })
    }

    /// `POST /v1/signup`: 201 with the user.
    ///
    /// # Errors
    /// Any other answer.
    pub async fn signup(&self, email: &str) -> Result<Answer, Failure> {
        let credentials = json!({ "email": email, "password": PASSWORD });
        let request = self.http.post(self.url("/v1/signup")).json(&credentials);
        self.call(request, "signup", StatusCode::CREATED).await
    }

    /// `POST /v1/login`: 200 with tokens.
    ///
    /// # Errors
    /// Any other answer.
    pub async fn login(&self, email: &str) -> Result<(Answer, Tokens), Failure> {
        let credentials = json!({ "email": email, "password": PASSWORD });
        let request = self.http.post(self.url("/v1/login")).json(&credentials);
        let answer = self.call(request, "login", StatusCode::OK).await?;
        let token = |name: &str| {
            answer.body[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Failure {
                    status: Some(StatusCode::OK),
                    detail: format!("login: no {name}: {}", answer.body),
                })
        };
        let tokens = Tokens {
            access: token("access_token")?,
            refresh: token("refresh_token")?,
        };
        Ok((answer, tokens))
    }

    /// `POST /profile/v1/profiles` with `profile` (JSON): 201 with the profile.
    ///
    /// # Errors
    /// Any other answer.
    pub async fn create_profile(&self, token: &str, profile: &Value) -> Result<Answer, Failure> {
        let request = self
            .http
            .post(self.url("/profile/v1/profiles"))
            .bearer_auth(token)
            .json(profile);
        self.call(request, "create-profile", StatusCode::CREATED)
            .await
    }

    /// `GET <path>` with `token`: 200 with JSON.
    ///
    /// # Errors
    /// Any other answer.
    pub async fn get(&self, path: &str, token: &str) -> Result<Answer, Failure> {
        let request = self.http.get(self.url(path)).bearer_auth(token);
        self.call(request, "get", StatusCode::OK).await
    }

    /// Logging's records of the request `request_id`, through the gateway's admin-only
    /// `/logging/` route.
    ///
    /// # Errors
    /// Any answer but 200.
    pub async fn log_records(&self, admin: &str, request_id: &str) -> Result<Vec<Value>, Failure> {
        let request = self
            .http
            // Request ids here are ASCII letters, digits and dashes: nothing to escape.
            .get(self.url(&format!(
                "/logging/v1/records?request_id={request_id}&limit=1000"
            )))
            .bearer_auth(admin);
        let answer = self.call(request, "log-records", StatusCode::OK).await?;
        Ok(answer.body["records"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Signs up, logs in and creates a profile (`display_name`, `locale`) for a new user
    /// `<prefix>-…@example.com`.
    ///
    /// # Errors
    /// The first call that failed.
    pub async fn new_user(&self, prefix: &str, locale: &str) -> Result<User, Failure> {
        let email = unique_email(prefix);
        let signup = self.signup(&email).await?;
        let (_, tokens) = self.login(&email).await?;
        let profile = json!({ "email": email, "display_name": prefix, "locale": locale });
        self.create_profile(&tokens.access, &profile).await?;
        Ok(User {
            id: signup.body["id"].as_str().unwrap_or_default().to_owned(),
            email,
            tokens,
        })
    }
}

/// A user with a profile.
#[derive(Debug, Clone)]
pub struct User {
    /// The user id.
    pub id: String,
    /// The email address.
    pub email: String,
    /// The tokens of its login.
    pub tokens: Tokens,
}
