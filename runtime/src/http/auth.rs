//! Who may use the admin routes: the bearer token of `http.admin_token`, compared in constant
//! time, and whether the routes that change things are on at all.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Error;
use crate::config::{HttpConfig, check_admin_token};

/// The admin token, kept only as its SHA-256 digest: comparing digests of equal length in
/// constant time tells nothing of the token's length or of where a guess goes wrong.
#[derive(Clone)]
struct Token([u8; 32]);

impl Token {
    fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

/// What the admin routes let a request do.
#[derive(Clone)]
pub(crate) struct AdminAccess {
    token: Option<Token>,
    /// `http.admin` and a token: the routes that change things are served.
    writes: bool,
    /// `http.admin_protect_reads`: the read-only routes need the token too.
    protect_reads: bool,
    /// Why the routes that change things are off, for the 403 answer.
    off_because: &'static str,
}

/// The routes that change things are off because `http.admin` is false.
const OFF_ADMIN_FALSE: &str = "this worker's admin routes are off: set `http.admin = true` in \
     shareworker.toml (or SHAREWORKER_HTTP__ADMIN=true) with an admin token \
     (SHAREWORKER_HTTP__ADMIN_TOKEN or `http.admin_token_file`) and restart the worker, or use \
     the CLI against Kafka directly with --broker";

/// The routes that change things are off because no token is configured.
const OFF_NO_TOKEN: &str = "this worker's admin routes are off: `http.admin = true` needs an \
     admin token, and none is configured: set SHAREWORKER_HTTP__ADMIN_TOKEN (at least 16 \
     characters) or `http.admin_token_file` and restart the worker";

impl AdminAccess {
    /// Read-only routes for everyone, the routes that change things off: the exporter's.
    pub(crate) fn read_only() -> Self {
        Self {
            token: None,
            writes: false,
            protect_reads: false,
            off_because: OFF_ADMIN_FALSE,
        }
    }

    /// From the `http` settings, reading `http.admin_token_file` if set. The second value is a
    /// warning for the start-up log when `http.admin = true` cannot be honoured.
    ///
    /// # Errors
    /// The token file cannot be read, or its token is too short (the message names the file,
    /// never the token).
    pub(crate) fn from_config(http: &HttpConfig) -> Result<(Self, Option<&'static str>), Error> {
        let token = match (&http.admin_token, &http.admin_token_file) {
            (Some(t), _) => Some(Token::new(t.expose().trim())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(format!(
                        "`http.admin_token_file`: cannot read `{}`: {e}",
                        path.display()
                    ))
                })?;
                check_admin_token("http.admin_token_file", text.trim()).map_err(|e| {
                    Error::config(format!("{e} (the token in `{}`)", path.display()))
                })?;
                Some(Token::new(text.trim()))
            }
            (None, None) => None,
        };
        let writes = http.admin && token.is_some();
        let warning = (http.admin && token.is_none()).then_some(OFF_NO_TOKEN);
        Ok((
            Self {
                writes,
                protect_reads: http.admin_protect_reads && token.is_some(),
                off_because: if http.admin {
                    OFF_NO_TOKEN
                } else {
                    OFF_ADMIN_FALSE
                },
                token,
            },
            warning,
        ))
    }

    /// With `token` as the admin token; `writes`: whether the routes that change things are on.
    #[cfg(test)]
    pub(crate) fn with_token(token: &str, writes: bool, protect_reads: bool) -> Self {
        Self {
            token: Some(Token::new(token)),
            writes,
            protect_reads,
            off_because: OFF_ADMIN_FALSE,
        }
    }

    /// Whether the routes that change things are served.
    pub(crate) fn writes(&self) -> bool {
        self.writes
    }

    /// May this request change things? `what` names the action for the answer.
    pub(crate) fn check_write(&self, headers: &HeaderMap, what: &str) -> Result<(), Refused> {
        if !self.writes {
            return Err(Refused::Off {
                what: what.to_owned(),
                because: self.off_because,
            });
        }
        self.check_token(headers)
    }

    /// May this request read?
    pub(crate) fn check_read(&self, headers: &HeaderMap) -> Result<(), Refused> {
        if self.protect_reads {
            self.check_token(headers)
        } else {
            Ok(())
        }
    }

    fn check_token(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let Some(token) = &self.token else {
            return Err(Refused::Off {
                what: "this route".to_owned(),
                because: OFF_NO_TOKEN,
            });
        };
        let presented = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        match presented {
            None => Err(Refused::NoToken),
            Some(p) if token.matches(p) => Ok(()),
            Some(_) => Err(Refused::WrongToken),
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The routes that change things are off (403).
    Off { what: String, because: &'static str },
    /// No `Authorization: Bearer` header (401).
    NoToken,
    /// A token that is not the admin token (401).
    WrongToken,
}

impl Refused {
    /// The HTTP status and the message of the answer.
    pub(crate) fn answer(&self) -> (u16, String) {
        match self {
            Self::Off { what, because } => (403, format!("{what} is refused: {because}")),
            Self::NoToken => (
                401,
                "this route needs the admin token: send `Authorization: Bearer <token>` (the \
                 CLI: --token or SHAREWORKER_HTTP__ADMIN_TOKEN)"
                    .to_owned(),
            ),
            Self::WrongToken => (401, "the admin token does not match".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(AUTHORIZATION, HeaderValue::from_str(a).expect("header"));
        }
        h
    }

    const TOKEN: &str = "0123456789abcdef-secret";

    #[test]
    fn writes_need_admin_and_the_right_bearer_token() {
        let on = AdminAccess::with_token(TOKEN, true, false);
        assert_eq!(
            on.check_write(&headers(None), "enqueue"),
            Err(Refused::NoToken)
        );
        assert_eq!(
            on.check_write(&headers(Some("Bearer nope")), "enqueue"),
            Err(Refused::WrongToken)
        );
        // The right token with another scheme, or a prefix of it, is not the token.
        assert_eq!(
            on.check_write(&headers(Some(&format!("Basic {TOKEN}"))), "enqueue"),
            Err(Refused::NoToken)
        );
        assert_eq!(
            on.check_write(&headers(Some(&format!("Bearer {}", &TOKEN[..8]))), "x"),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            on.check_write(&headers(Some(&format!("bearer  {TOKEN} "))), "enqueue"),
            Ok(())
        );
        // Reads are open unless protected.
        assert_eq!(on.check_read(&headers(None)), Ok(()));
        let protected = AdminAccess::with_token(TOKEN, false, true);
        assert_eq!(protected.check_read(&headers(None)), Err(Refused::NoToken));
        assert_eq!(
            protected.check_read(&headers(Some(&format!("Bearer {TOKEN}")))),
            Ok(())
        );
        // Off: the right token does not turn writes on.
        let err = protected
            .check_write(&headers(Some(&format!("Bearer {TOKEN}"))), "enqueue")
            .expect_err("off");
        let (code, message) = err.answer();
        assert_eq!(code, 403);
        assert!(message.contains("http.admin = true"), "{message}");
    }

    #[test]
    fn admin_without_a_token_stays_off_and_says_why() {
        let mut http = HttpConfig {
            admin: true,
            ..HttpConfig::default()
        };
        let (access, warning) = AdminAccess::from_config(&http).expect("config");
        assert!(!access.writes());
        assert!(warning.is_some_and(|w| w.contains("needs an admin token")));
        let (code, message) = access
            .check_write(&headers(Some("Bearer anything-at-all-here")), "enqueue")
            .expect_err("off")
            .answer();
        assert_eq!(code, 403);
        assert!(
            message.contains("SHAREWORKER_HTTP__ADMIN_TOKEN"),
            "{message}"
        );

        // A token file: read, trimmed, and its token works.
        let dir = std::env::temp_dir().join(format!("sw-token-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).expect("write");
        http.admin_token_file = Some(file.clone());
        let (access, warning) = AdminAccess::from_config(&http).expect("config");
        assert!(access.writes() && warning.is_none());
        assert_eq!(
            access.check_write(&headers(Some(&format!("Bearer {TOKEN}"))), "enqueue"),
            Ok(())
        );
        // Too short: refused with the file's name and never the token.
        std::fs::write(&file, "short-secret\n").expect("write");
        let e = AdminAccess::from_config(&http)
            .err()
            .expect("a short token is refused");
        assert!(e.to_string().contains("at least 16"), "{e}");
        assert!(e.to_string().contains("admin_token_file"), "{e}");
        assert!(!e.to_string().contains("short-secret"), "{e}");
        // Missing: refused with the path.
        http.admin_token_file = Some(dir.join("nope"));
        let e = AdminAccess::from_config(&http)
            .err()
            .expect("a missing file is refused");
        assert!(e.to_string().contains("cannot read"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
