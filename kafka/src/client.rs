//! The settings of a Kafka client: bootstrap addresses, client id, request timeout, and how
//! connections are secured (a ready TLS client, SASL credentials).
//!
//! Below both [`transport`](super::transport) / [`conn`](super::conn) and
//! [`cluster`](super::cluster): they read it, it knows neither.

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsConnector;

use super::config::{KafkaConfig, SecurityProtocol};
use super::sasl::Credentials;
use crate::Error;

/// Settings of a Kafka client.
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    pub(crate) bootstrap: Vec<String>,
    pub(crate) client_id: String,
    pub(crate) request_timeout: Duration,
    pub(crate) security: Security,
}

/// How connections are secured, ready to use: a TLS client and SASL credentials.
#[derive(Clone)]
pub(crate) struct Security {
    pub(crate) protocol: SecurityProtocol,
    pub(crate) tls: Option<TlsConnector>,
    pub(crate) sasl: Option<Arc<Credentials>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("sasl", &self.sasl)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Reads the certificate files and checks the settings.
    fn new(kafka: &KafkaConfig) -> Result<Self, Error> {
        kafka.validate()?;
        let protocol = kafka.security_protocol;
        let tls = if protocol.uses_tls() {
            Some(super::tls::connector(kafka)?)
        } else {
            None
        };
        let sasl = match (
            &kafka.sasl_mechanism,
            &kafka.sasl_username,
            &kafka.sasl_password,
        ) {
            (Some(mechanism), Some(username), Some(password)) if protocol.uses_sasl() => {
                Some(Arc::new(Credentials {
                    mechanism: *mechanism,
                    username: username.clone(),
                    password: password.clone(),
                }))
            }
            _ => None,
        };
        Ok(Self {
            protocol,
            tls,
            sasl,
        })
    }
}

impl ClientConfig {
    /// Parses `kafka://host:port[,host:port...]`, with no security settings but the URL's.
    #[cfg(test)]
    pub(crate) fn from_url(url: &str) -> Result<Self, Error> {
        Self::new(url, &KafkaConfig::default())
    }

    /// Parses `kafka://host:port[,host:port...][?key=value&...]` and applies `kafka` and the
    /// URL's query. Messages quote the host list only: the query may hold what must not be
    /// logged.
    pub(crate) fn new(url: &str, kafka: &KafkaConfig) -> Result<Self, Error> {
        let (hosts, query) = url.split_once('?').unwrap_or((url, ""));
        let rest = hosts.strip_prefix("kafka://").ok_or_else(|| {
            let shown = if hosts.contains('@') {
                "(hidden)"
            } else {
                hosts
            };
            Error::config(format!(
                "`broker`: `{shown}` is not a Kafka address; write kafka://host:port[,host:port...]"
            ))
        })?;
        if rest.contains('@') {
            return Err(Error::config(
                "`broker`: the broker URL must not carry credentials (user:password@): URLs end up in logs. Set `kafka.sasl_username`, and `kafka.sasl_password` in the environment (SHAREWORKER_KAFKA__SASL_PASSWORD)",
            ));
        }
        let kafka = kafka.with_url_query(query)?;
        let rest = rest.trim_end_matches('/');
        let mut bootstrap = Vec::new();
        for part in rest.split(',') {
            let part = part.trim();
            let ok = part
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(Error::config(format!(
                    "`broker`: `{part}` in `{hosts}` is not host:port"
                )));
            }
            bootstrap.push(part.to_owned());
        }
        Ok(Self {
            bootstrap,
            client_id: "shareworker".to_owned(),
            request_timeout: Duration::from_millis(
                kafka
                    .request_timeout_ms
                    .unwrap_or(super::config::DEFAULT_REQUEST_TIMEOUT_MS),
            ),
            security: Security::new(&kafka)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let c = ClientConfig::from_url("kafka://127.0.0.1:9092,localhost:9093").expect("valid");
        assert_eq!(c.bootstrap, ["127.0.0.1:9092", "localhost:9093"]);
        for bad in [
            "127.0.0.1:9092",
            "kafka://",
            "kafka://host",
            "kafka://host:notaport",
        ] {
            let err = ClientConfig::from_url(bad).expect_err(bad);
            assert!(err.is_config(), "{bad}: {err}");
            assert!(err.to_string().contains("broker"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_request_timeout_is_configurable_and_bounded() {
        let c = ClientConfig::from_url("kafka://127.0.0.1:9092").expect("valid");
        assert_eq!(c.request_timeout, Duration::from_secs(30), "the default");
        let c = ClientConfig::from_url("kafka://127.0.0.1:9092?request_timeout_ms=5000")
            .expect("valid");
        assert_eq!(c.request_timeout, Duration::from_secs(5), "from the URL");
        let kafka = KafkaConfig {
            request_timeout_ms: Some(120_000),
            ..KafkaConfig::default()
        };
        let c = ClientConfig::new("kafka://127.0.0.1:9092", &kafka).expect("valid");
        assert_eq!(c.request_timeout, Duration::from_secs(120), "from [kafka]");
        // Tried: too short, not a number.
        for (url, hint) in [
            (
                "kafka://127.0.0.1:9092?request_timeout_ms=100",
                "at least 1000",
            ),
            (
                "kafka://127.0.0.1:9092?request_timeout_ms=soon",
                "not a number",
            ),
        ] {
            let e = ClientConfig::from_url(url).expect_err(url);
            let text = e.to_string();
            assert!(
                e.is_config() && text.contains("request_timeout_ms"),
                "{url}: {text}"
            );
            assert!(text.contains(hint), "{url}: {text}");
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_being_repeated() {
        for bad in [
            "kafka://alice:hunter2@127.0.0.1:9092",
            "kafka://127.0.0.1:9092?sasl_password=hunter2",
            "kafka://127.0.0.1:9092?security_protocol=SASL_SSL&sasl.password=hunter2",
            "alice:hunter2@127.0.0.1:9092",
        ] {
            let err = ClientConfig::from_url(bad).expect_err(bad);
            let text = format!("{err} {err:?}");
            assert!(err.is_config(), "{bad}: {text}");
            assert!(
                !text.contains("hunter2"),
                "{bad}: the error repeats the password: {text}"
            );
        }
        let c = ClientConfig::from_url("kafka://127.0.0.1:9092/?security_protocol=SASL_PLAINTEXT")
            .expect_err("SASL without a mechanism");
        assert!(c.to_string().contains("sasl_mechanism"), "{c}");
    }
}
