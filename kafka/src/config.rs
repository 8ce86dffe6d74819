//! The `[kafka]` section of the configuration: how the client secures its connections (TLS, SASL).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;
pub(crate) use shareworker_core::Secret;

/// Settings of the Kafka client (key `kafka`): TLS and SASL, with the names of Kafka's own client
/// settings (`security.protocol`, `sasl.mechanism`, `ssl.ca.location`, ...) written with `_`.
///
/// Only read when `broker` is a `kafka://` address. The defaults connect in plain text without
/// authentication (`PLAINTEXT`).
///
/// ```toml
/// broker = "kafka://kafka-1.example.com:9094,kafka-2.example.com:9094"
///
/// [kafka]
/// security_protocol = "SASL_SSL"         # PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL
/// sasl_mechanism = "SCRAM-SHA-512"       # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
/// sasl_username = "billing-worker"
/// # sasl_password: from the environment, SHAREWORKER_KAFKA__SASL_PASSWORD=...
/// ssl_ca_location = "/etc/kafka/ca.pem"  # default: the system's trusted roots
/// # ssl_certificate_location = "/etc/kafka/client.pem"   # a client certificate (mutual TLS)
/// # ssl_key_location = "/etc/kafka/client.key"
/// # request_timeout_ms = 30000           # Kafka's request.timeout.ms
/// ```
///
/// - **TLS** (`SSL`, `SASL_SSL`): rustls, TLS 1.2 or 1.3. The broker's certificate must chain to
///   `ssl_ca_location` (a PEM file of one or more CA certificates) or, without it, to the
///   operating system's trusted roots (the platform store; on Linux `SSL_CERT_FILE` and
///   `SSL_CERT_DIR` override where they are read). The host name (or IP address) the client
///   connects to must be in the certificate: hostname verification is always on. With
///   `ssl_certificate_location` and `ssl_key_location` (PEM; the key unencrypted, PKCS#8, PKCS#1
///   or SEC1) the client presents a certificate to brokers that ask for one (`ssl.client.auth`).
/// - **SASL** (`SASL_PLAINTEXT`, `SASL_SSL`): `PLAIN` (send `SASL_PLAINTEXT` only on a network
///   you trust: the password crosses it in the clear) or `SCRAM-SHA-256`/`SCRAM-SHA-512` (RFC
///   5802/7677; the password never crosses the wire). If the broker limits the session
///   (`connections.max.reauth.ms`, KIP-368), the client authenticates again on the same
///   connection before it ends.
/// - **Secrets.** Keep the password out of files: `SHAREWORKER_KAFKA__SASL_PASSWORD` is read as
///   is (not parsed as a number or a list). It never appears in `Debug` output, logs or errors.
///   The broker URL may carry the other settings as a query
///   (`kafka://host:9094?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_username=app`),
///   never the password: the URL shows up in logs.
/// - **Failures.** A refused password or certificate, and a broker certificate that is not
///   trusted, end start-up at once with an error for which
///   [`Error::is_auth`](crate::Error::is_auth) is true; they are not retried.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, as the broker's listener.
    pub security_protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required with `SASL_*`.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// The SASL user name; required with `SASL_*`.
    pub sasl_username: Option<String>,
    /// The SASL password; required with `SASL_*`. Set it with `SHAREWORKER_KAFKA__SASL_PASSWORD`.
    pub sasl_password: Option<Secret>,
    /// A PEM file with the CA certificates that sign the brokers' certificates (default: the
    /// system's trusted roots). Only with `SSL` and `SASL_SSL`.
    pub ssl_ca_location: Option<PathBuf>,
    /// A PEM file with this client's certificate (and its chain), for brokers that ask for one.
    pub ssl_certificate_location: Option<PathBuf>,
    /// A PEM file with the unencrypted private key of `ssl_certificate_location`.
    pub ssl_key_location: Option<PathBuf>,
    /// How long, in milliseconds, a request may wait for the broker's answer before its
    /// connection is given up and opened again (Kafka's `request.timeout.ms`; default 30000, at
    /// least 1000). It also bounds connecting, the TLS handshake and a member's join.
    pub request_timeout_ms: Option<u64>,
}

/// The default of [`KafkaConfig::request_timeout_ms`].
pub(crate) const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// The least [`KafkaConfig::request_timeout_ms`]: a share fetch alone may wait 500 ms on the
/// broker.
const MIN_REQUEST_TIMEOUT_MS: u64 = 1_000;

/// How the client talks to the brokers: Kafka's `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication.
    #[default]
    Plaintext,
    /// TLS; the client may authenticate with a certificate.
    Ssl,
    /// SASL authentication over plain TCP.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name for it: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    /// Kafka's names, in any case (`sasl_ssl` is `SASL_SSL`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(format!(
                "`{s}` is not a security protocol; use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )),
        }
    }
}

impl Serialize for SecurityProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SecurityProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The SASL mechanism: Kafka's `sasl.mechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// `PLAIN`: user name and password as they are (use it over TLS).
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// Kafka's name for it: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    /// Kafka's names, in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            "GSSAPI" | "OAUTHBEARER" => Err(format!(
                "SASL mechanism `{s}` is not supported; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )),
            _ => Err(format!(
                "`{s}` is not a SASL mechanism; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )),
        }
    }
}

impl Serialize for SaslMechanism {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SaslMechanism {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Settings the broker URL's query may carry; never the password.
const URL_KEYS: &str = "security_protocol, sasl_mechanism, sasl_username, ssl_ca_location, ssl_certificate_location, ssl_key_location, request_timeout_ms";

impl KafkaConfig {
    /// These settings with the ones of a broker URL's query (`a=b&c=d`, without the `?`) added.
    /// A key set in both places must agree. Error messages never repeat the query: a password
    /// put there by mistake must not reach a log.
    pub(crate) fn with_url_query(&self, query: &str) -> Result<Self, Error> {
        let mut out = self.clone();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)
                .unwrap_or_default()
                .to_ascii_lowercase()
                .replace('.', "_");
            if key.contains("password") || key.contains("secret") || key.ends_with("_key") {
                return Err(Error::config(format!(
                    "`broker`: the broker URL must not carry `{key}`: URLs end up in logs. Set \
                     `kafka.sasl_password` in the environment (SHAREWORKER_KAFKA__SASL_PASSWORD) \
                     instead, and change the password if this URL was shared"
                )));
            }
            let value = percent_decode(value).ok_or_else(|| {
                Error::config(format!(
                    "`broker`: the value of `{key}` in the broker URL has a malformed %-escape"
                ))
            })?;
            let bad = |e: String| Error::config(format!("`broker`: `{key}` in the URL: {e}"));
            match key.as_str() {
                "security_protocol" => {
                    let v: SecurityProtocol = value.parse().map_err(bad)?;
                    // The default counts as "not configured".
                    let configured = out.security_protocol;
                    if configured != SecurityProtocol::Plaintext && configured != v {
                        return Err(conflict(&key, configured.as_str()));
                    }
                    out.security_protocol = v;
                }
                "sasl_mechanism" => {
                    let v = value.parse().map_err(bad)?;
                    set_opt(&mut out.sasl_mechanism, v, &key)?;
                }
                "sasl_username" => set_opt(&mut out.sasl_username, value, &key)?,
                "ssl_ca_location" => set_opt(&mut out.ssl_ca_location, value.into(), &key)?,
                "ssl_certificate_location" => {
                    set_opt(&mut out.ssl_certificate_location, value.into(), &key)?;
                }
                "ssl_key_location" => set_opt(&mut out.ssl_key_location, value.into(), &key)?,
                "request_timeout_ms" => {
                    let v = value
                        .parse::<u64>()
                        .map_err(|_| bad(format!("`{value}` is not a number of milliseconds")))?;
                    set_opt(&mut out.request_timeout_ms, v, &key)?;
                }
                _ => {
                    return Err(Error::config(format!(
                        "`broker`: `{key}` in the URL's query is not a setting; it may carry {URL_KEYS}"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Checks these settings with those of the `broker` URL's query (when it is a Kafka URL).
    ///
    /// # Errors
    /// `is_config` when a setting is malformed or the URL's query contradicts it.
    pub fn validate_for(&self, broker: &str) -> Result<(), Error> {
        match broker.split_once('?') {
            Some((_, query)) if broker.starts_with("kafka://") => {
                self.with_url_query(query)?.validate()
            }
            _ => self.validate(),
        }
    }

    /// Checks that the settings fit together; each message names the key and what to do.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |key: &str, what: String| Err(Error::config(format!("`kafka.{key}`: {what}")));
        let p = self.security_protocol;
        if p.uses_sasl() {
            let Some(mechanism) = self.sasl_mechanism else {
                return bad(
                    "sasl_mechanism",
                    format!(
                        "required with security_protocol = \"{p}\"; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                    ),
                );
            };
            match self.sasl_username.as_deref() {
                None | Some("") => {
                    return bad(
                        "sasl_username",
                        format!("required with security_protocol = \"{p}\""),
                    );
                }
                Some(u) if mechanism == SaslMechanism::Plain && u.contains('\0') => {
                    return bad("sasl_username", "must not contain a NUL character".into());
                }
                Some(_) => {}
            }
            match &self.sasl_password {
                None => {
                    return bad(
                        "sasl_password",
                        format!(
                            "required with security_protocol = \"{p}\"; set SHAREWORKER_KAFKA__SASL_PASSWORD"
                        ),
                    );
                }
                Some(s) if mechanism == SaslMechanism::Plain && s.expose().contains('\0') => {
                    return bad("sasl_password", "must not contain a NUL character".into());
                }
                Some(_) => {}
            }
        } else {
            for (key, set) in [
                ("sasl_mechanism", self.sasl_mechanism.is_some()),
                ("sasl_username", self.sasl_username.is_some()),
                ("sasl_password", self.sasl_password.is_some()),
            ] {
                if set {
                    return bad(
                        key,
                        format!(
                            "is set but security_protocol is \"{p}\", which does not authenticate: use SASL_SSL or SASL_PLAINTEXT, or remove it"
                        ),
                    );
                }
            }
        }
        if !p.uses_tls() {
            for (key, set) in [
                ("ssl_ca_location", self.ssl_ca_location.is_some()),
                (
                    "ssl_certificate_location",
                    self.ssl_certificate_location.is_some(),
                ),
                ("ssl_key_location", self.ssl_key_location.is_some()),
            ] {
                if set {
                    return bad(
                        key,
                        format!(
                            "is set but security_protocol is \"{p}\", which does not use TLS: use SSL or SASL_SSL, or remove it"
                        ),
                    );
                }
            }
        }
        if let Some(ms) = self.request_timeout_ms
            && ms < MIN_REQUEST_TIMEOUT_MS
        {
            return bad(
                "request_timeout_ms",
                format!(
                    "{ms} is too short: give at least {MIN_REQUEST_TIMEOUT_MS} (a share fetch alone waits up to 500 ms on the broker); the default is {DEFAULT_REQUEST_TIMEOUT_MS}"
                ),
            );
        }
        match (&self.ssl_certificate_location, &self.ssl_key_location) {
            (Some(_), None) => bad(
                "ssl_key_location",
                "required with ssl_certificate_location (the client certificate's private key)"
                    .into(),
            ),
            (None, Some(_)) => bad(
                "ssl_certificate_location",
                "required with ssl_key_location (the certificate of that key)".into(),
            ),
            _ => Ok(()),
        }
    }
}

fn set_opt<T: PartialEq + fmt::Debug>(
    slot: &mut Option<T>,
    value: T,
    key: &str,
) -> Result<(), Error> {
    match slot {
        Some(old) if *old != value => Err(conflict(key, &format!("{old:?}"))),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn conflict(key: &str, configured: &str) -> Error {
    Error::config(format!(
        "`broker`: the URL sets `{key}`, and `kafka.{key}` says {configured}: set it in one place"
    ))
}

/// Decodes `%XX` escapes (and `+` as a space); `None` when an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The SASL user name and password from the environment, read as they are.
///
/// figment's `Env` provider parses values (`007` becomes the number 7, `"x"` loses its quotes,
/// `[a]` becomes a list), which would change a password; this provider, merged after it, puts
/// the raw text back.
pub fn raw_env_credentials(prefix: &str) -> impl figment::Provider {
    #[derive(Serialize, Default)]
    struct Raw {
        #[serde(skip_serializing_if = "Option::is_none")]
        sasl_username: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sasl_password: Option<String>,
    }
    #[derive(Serialize)]
    struct Layer {
        kafka: Raw,
    }
    let mut raw = Raw::default();
    for (key, value) in figment::providers::Env::prefixed(prefix).split("__").iter() {
        match key.as_str() {
            "kafka.sasl_username" => raw.sasl_username = Some(value),
            "kafka.sasl_password" => raw.sasl_password = Some(value),
            _ => {}
        }
    }
    // Nothing set: an empty `kafka` table, which changes nothing when merged.
    figment::providers::Serialized::defaults(Layer { kafka: raw })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures
mod tests {
    use super::*;

    fn sasl() -> KafkaConfig {
        KafkaConfig {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: Some("alice".into()),
            sasl_password: Some(Secret::new("s3cr3t-pa55")),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let c = sasl();
        let text = format!("{c:?} {c:#?} {:?}", c.sasl_password);
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("alice") && text.contains("***"), "{text}");
    }

    #[test]
    fn names_parse_as_kafka_writes_them() {
        assert_eq!("SASL_SSL".parse(), Ok(SecurityProtocol::SaslSsl));
        assert_eq!(
            "sasl_plaintext".parse(),
            Ok(SecurityProtocol::SaslPlaintext)
        );
        assert_eq!("scram-sha-512".parse(), Ok(SaslMechanism::ScramSha512));
        let e = "GSSAPI".parse::<SaslMechanism>().expect_err("unsupported");
        assert!(
            e.contains("not supported") && e.contains("SCRAM-SHA-256"),
            "{e}"
        );
        let e = "TLS"
            .parse::<SecurityProtocol>()
            .expect_err("not Kafka's name");
        assert!(e.contains("SASL_SSL"), "{e}");
    }

    #[test]
    fn settings_that_do_not_fit_together_are_refused() {
        assert!(sasl().validate().is_ok());
        assert!(KafkaConfig::default().validate().is_ok());
        let cases: Vec<(KafkaConfig, &str, &str)> = vec![
            (
                KafkaConfig {
                    sasl_mechanism: None,
                    ..sasl()
                },
                "kafka.sasl_mechanism",
                "SCRAM-SHA-256",
            ),
            (
                KafkaConfig {
                    sasl_password: None,
                    ..sasl()
                },
                "kafka.sasl_password",
                "SHAREWORKER_KAFKA__SASL_PASSWORD",
            ),
            (
                KafkaConfig {
                    sasl_username: Some(String::new()),
                    ..sasl()
                },
                "kafka.sasl_username",
                "required",
            ),
            (
                KafkaConfig {
                    security_protocol: SecurityProtocol::Ssl,
                    ..sasl()
                },
                "kafka.sasl_mechanism",
                "SASL_SSL",
            ),
            (
                KafkaConfig {
                    security_protocol: SecurityProtocol::SaslPlaintext,
                    ssl_ca_location: Some("ca.pem".into()),
                    ..sasl()
                },
                "kafka.ssl_ca_location",
                "does not use TLS",
            ),
            (
                KafkaConfig {
                    security_protocol: SecurityProtocol::Ssl,
                    ssl_certificate_location: Some("client.pem".into()),
                    ..KafkaConfig::default()
                },
                "kafka.ssl_key_location",
                "required",
            ),
        ];
        for (c, key, hint) in cases {
            let e = c.validate().expect_err(key);
            let msg = e.to_string();
            assert!(e.is_config(), "{msg}");
            assert!(msg.contains(key) && msg.contains(hint), "{key}: {msg}");
            assert!(!format!("{msg} {e:?}").contains("s3cr3t"), "{msg}");
        }
    }

    #[test]
    fn the_url_query_carries_settings_but_never_the_password() {
        let c = KafkaConfig::default()
            .with_url_query(
                "security.protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-256&sasl_username=a%2Cb&ssl_ca_location=%2Fetc%2Fca.pem",
            )
            .expect("valid query");
        assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(c.sasl_mechanism, Some(SaslMechanism::ScramSha256));
        assert_eq!(c.sasl_username.as_deref(), Some("a,b"));
        assert_eq!(c.ssl_ca_location, Some(PathBuf::from("/etc/ca.pem")));

        for q in [
            "sasl_password=hunter2",
            "sasl.password=hunter2",
            "password=hunter2",
        ] {
            let e = KafkaConfig::default().with_url_query(q).expect_err(q);
            let text = format!("{e} {e:?}");
            assert!(e.is_config() && text.contains("must not carry"), "{text}");
            assert!(
                !text.contains("hunter2"),
                "the error repeats the secret: {text}"
            );
        }
        let e = KafkaConfig::default()
            .with_url_query("retries=3")
            .expect_err("unknown key");
        assert!(e.to_string().contains("retries"), "{e}");
        let e = sasl()
            .with_url_query("sasl_username=bob")
            .expect_err("conflict");
        assert!(e.to_string().contains("one place"), "{e}");
        let e = sasl()
            .with_url_query("security_protocol=SSL")
            .expect_err("conflict");
        assert!(e.to_string().contains("one place"), "{e}");
        assert!(
            sasl()
                .with_url_query("security_protocol=sasl_ssl&sasl_username=alice")
                .is_ok(),
            "agreeing values are fine"
        );
    }

    #[test]
    fn the_password_from_the_environment_is_read_as_it_is() {
        figment::Jail::expect_with(|jail| {
            use figment::Figment;
            use figment::providers::{Env, Serialized};
            #[derive(Deserialize)]
            struct Outer {
                kafka: KafkaConfig,
            }
            #[derive(Serialize)]
            struct Defaults {
                kafka: KafkaConfig,
            }
            for raw in [
                "007",
                "\"quoted\"",
                "[a,b]",
                "{a=b}",
                " spaced ",
                "true",
                "1.50",
            ] {
                jail.set_env("SHAREWORKER_KAFKA__SASL_PASSWORD", raw);
                jail.set_env("SHAREWORKER_KAFKA__SASL_USERNAME", "0042");
                jail.set_env("SHAREWORKER_KAFKA__SECURITY_PROTOCOL", "sasl_ssl");
                let got: Outer = Figment::from(Serialized::defaults(Defaults {
                    kafka: KafkaConfig::default(),
                }))
                .merge(Env::prefixed("SHAREWORKER_").split("__"))
                .merge(raw_env_credentials("SHAREWORKER_"))
                .extract()
                .map_err(|e| e.to_string())?;
                assert_eq!(
                    got.kafka.sasl_password.as_ref().map(Secret::expose),
                    Some(raw)
                );
                assert_eq!(got.kafka.sasl_username.as_deref(), Some("0042"));
                assert_eq!(got.kafka.security_protocol, SecurityProtocol::SaslSsl);
            }
            Ok(())
        });
    }

    #[test]
    fn a_password_of_the_wrong_type_is_refused_without_repeating_it() {
        figment::Jail::expect_with(|_| {
            use figment::Figment;
            use figment::providers::{Format, Toml};
            #[derive(Debug, Deserialize)]
            #[allow(dead_code)]
            struct Outer {
                kafka: KafkaConfig,
            }
            let e = Figment::from(Toml::string("[kafka]\nsasl_password = 3.14159"))
                .extract::<Outer>()
                .expect_err("a float is not a password");
            assert!(!e.to_string().contains("3.14"), "{e}");
            let ok = Figment::from(Toml::string("[kafka]\nsasl_password = 1234"))
                .extract::<Outer>()
                .map_err(|e| e.to_string())?;
            assert_eq!(
                ok.kafka.sasl_password.as_ref().map(Secret::expose),
                Some("1234")
            );
            Ok(())
        });
    }
}
