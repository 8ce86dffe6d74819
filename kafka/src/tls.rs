//! TLS for broker connections: rustls with the ring provider, TLS 1.2 and 1.3.
//!
//! The broker's certificate is checked against `ssl_ca_location` or, without it, the operating
//! system's trusted roots (rustls-native-certs: the platform store, which is where operators put
//! a company CA and what security updates refresh; a compiled-in Mozilla list would neither see
//! the one nor get the other without a new build). The host name is always verified.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::config::KafkaConfig;
use crate::Error;

/// A TLS client set up from the `[kafka]` settings.
pub(crate) fn connector(config: &KafkaConfig) -> Result<TlsConnector, Error> {
    let client_auth = match (&config.ssl_certificate_location, &config.ssl_key_location) {
        (Some(cert), Some(key)) => Some((
            certificates(cert, "ssl_certificate_location")?,
            private_key(key)?,
        )),
        _ => None,
    };
    let roots = match &config.ssl_ca_location {
        Some(path) => ca_file(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let client = match client_auth {
        Some((chain, key)) => {
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::config(format!(
                    "`kafka.ssl_key_location`: the key does not fit `kafka.ssl_certificate_location` or is not usable: {e}"
                ))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(client)))
}

fn ca_file(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "ssl_ca_location")? {
        roots.add(cert).map_err(|e| {
            Error::config(format!(
                "`kafka.ssl_ca_location`: `{}` holds a certificate that cannot be a trust anchor: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(Error::config(format!(
            "`kafka.ssl_ca_location` is not set and the system has no trusted CA certificates{why}: install them (ca-certificates) or set `kafka.ssl_ca_location` to the CA's PEM file"
        )));
    }
    Ok(roots)
}

/// Every certificate of a PEM file.
fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = read(path, key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            Error::config(format!(
                "`kafka.{key}`: `{}` is not a valid PEM file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "`kafka.{key}`: `{}` holds no certificate (a PEM file with -----BEGIN CERTIFICATE----- blocks)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The first private key of a PEM file. Errors never quote the file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = read(path, "ssl_key_location")?;
    if bytes
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
        || bytes
            .windows(b"Proc-Type: 4,ENCRYPTED".len())
            .any(|w| w == b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(Error::config(format!(
            "`kafka.ssl_key_location`: `{}` is encrypted, which this client does not support; decrypt it (openssl pkey -in key.pem -out key-plain.pem) and protect the file instead",
            path.display()
        )));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        Error::config(format!(
            "`kafka.ssl_key_location`: `{}` holds no private key in PEM (PKCS#8 BEGIN PRIVATE KEY, PKCS#1 BEGIN RSA PRIVATE KEY or SEC1 BEGIN EC PRIVATE KEY)",
            path.display()
        ))
    })
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::config(format!("`kafka.{key}`: cannot read `{}`", path.display())).with_source(e)
    })
}

/// The name to verify the broker's certificate against: the host of `addr` (`host:port`).
fn server_name(addr: &str) -> Result<ServerName<'static>, Error> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| {
        Error::config(format!(
            "`{host}` is not a host name or IP address TLS can verify a certificate against"
        ))
    })
}

/// The TLS handshake with the broker at `addr` over `tcp`.
pub(crate) async fn handshake(
    connector: &TlsConnector,
    addr: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Error> {
    let name = server_name(addr)?;
    let stream = connector.connect(name, tcp).await.map_err(|e| {
        let e = classify(addr, e);
        if e.is_auth() {
            e
        } else {
            // A plain-text listener hangs up on a ClientHello.
            Error::broker(format!(
                "the TLS handshake with {addr} failed: is that listener SSL or SASL_SSL? Match `kafka.security_protocol` to it"
            ))
            .with_source(e)
        }
    })?;
    let (_, session) = stream.get_ref();
    tracing::debug!(
        broker = addr,
        version = ?session.protocol_version(),
        cipher = ?session.negotiated_cipher_suite().map(|s| s.suite()),
        "TLS handshake done"
    );
    Ok(stream)
}

/// An I/O error on a connection as an [`Error`]: TLS certificate problems are `is_auth`.
pub(crate) fn classify(addr: &str, e: io::Error) -> Error {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return Error::broker(e.to_string());
    };
    match tls {
        rustls::Error::InvalidCertificate(_) => Error::auth(format!(
            "the TLS certificate of the Kafka broker at {addr} is not trusted: {tls}. Set `kafka.ssl_ca_location` to the PEM file of the CA that signed it (default: the system's trusted roots), and connect by a name the certificate holds"
        )),
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => Error::auth(format!(
            "the Kafka broker at {addr} refused this client's TLS certificate (alert: {alert:?}): set `kafka.ssl_certificate_location` and `kafka.ssl_key_location` to a certificate the broker's truststore accepts"
        )),
        _ => Error::broker(format!("TLS: {tls}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_address() {
        assert!(matches!(
            server_name("127.0.0.1:9093"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("kafka-1.example.com:9093"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("[::1]:9093"),
            Ok(ServerName::IpAddress(_))
        ));
    }

    #[test]
    fn missing_or_empty_files_name_the_key() {
        let dir = std::env::temp_dir().join(format!("sw-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here").expect("write");
        let enc = dir.join("enc.pem");
        std::fs::write(
            &enc,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .expect("write");
        let cases = [
            (
                KafkaConfig {
                    ssl_ca_location: Some(dir.join("absent.pem")),
                    ..KafkaConfig::default()
                },
                "ssl_ca_location",
                "cannot read",
            ),
            (
                KafkaConfig {
                    ssl_ca_location: Some(empty.clone()),
                    ..KafkaConfig::default()
                },
                "ssl_ca_location",
                "no certificate",
            ),
            (
                KafkaConfig {
                    ssl_certificate_location: Some(empty.clone()),
                    ssl_key_location: Some(empty.clone()),
                    ..KafkaConfig::default()
                },
                "ssl_certificate_location",
                "no certificate",
            ),
        ];
        for (c, key, hint) in cases {
            let e = connector(&c).err().expect(key);
            assert!(e.is_config(), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(key) && msg.contains(hint), "{msg}");
        }
        let e = private_key(&enc).expect_err("encrypted");
        assert!(e.to_string().contains("encrypted"), "{e}");
        let e = private_key(&empty).expect_err("no key");
        assert!(e.to_string().contains("no private key"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
