//! SASL authentication: PLAIN and SCRAM-SHA-256/512 (RFC 5802, RFC 7677) as client state
//! machines without I/O. The connection drives them over SaslHandshake and SaslAuthenticate.
//!
//! As in Kafka's own client, the user name is escaped (`=` as `=3D`, `,` as `=2C`) and neither it
//! nor the password goes through SASLprep; no channel binding (`n,,`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::config::{SaslMechanism, Secret};
use crate::Error;

/// Kafka's client refuses fewer SCRAM iterations than this (a broker that asks for fewer is
/// either misconfigured or not the broker).
const MIN_ITERATIONS: u32 = 4096;
/// An upper bound, so a broker cannot make the client spin (Kafka allows at most 16384).
const MAX_ITERATIONS: u32 = 1_000_000;

/// Who the client is.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) mechanism: SaslMechanism,
    pub(crate) username: String,
    pub(crate) password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One authentication conversation.
pub(crate) struct Exchange<'a> {
    creds: &'a Credentials,
    state: State,
}

enum State {
    Start,
    PlainSent,
    ScramFirstSent {
        client_first_bare: String,
        nonce: String,
    },
    ScramFinalSent {
        server_signature: Vec<u8>,
    },
    Done,
}

impl<'a> Exchange<'a> {
    pub(crate) fn new(creds: &'a Credentials) -> Self {
        Self {
            creds,
            state: State::Start,
        }
    }

    /// The client's first message.
    pub(crate) fn first(&mut self) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::broker(format!("no random numbers for a SCRAM nonce: {e}")))?;
        self.first_with_nonce(&URL_SAFE_NO_PAD.encode(nonce))
    }

    fn first_with_nonce(&mut self, nonce: &str) -> Result<Vec<u8>, Error> {
        let c = self.creds;
        match c.mechanism {
            SaslMechanism::Plain => {
                // authzid NUL authcid NUL passwd (RFC 4616), no authzid.
                let mut m = Vec::with_capacity(c.username.len() + c.password.expose().len() + 2);
                m.push(0);
                m.extend_from_slice(c.username.as_bytes());
                m.push(0);
                m.extend_from_slice(c.password.expose().as_bytes());
                self.state = State::PlainSent;
                Ok(m)
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let user = c.username.replace('=', "=3D").replace(',', "=2C");
                let client_first_bare = format!("n={user},r={nonce}");
                let message = format!("n,,{client_first_bare}").into_bytes();
                self.state = State::ScramFirstSent {
                    client_first_bare,
                    nonce: nonce.to_owned(),
                };
                Ok(message)
            }
        }
    }

    /// Takes the server's answer; gives the next client message, or `None` when done.
    pub(crate) fn next(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::PlainSent => Ok(None),
            State::ScramFirstSent {
                client_first_bare,
                nonce,
            } => {
                let (message, server_signature) =
                    self.client_final(&client_first_bare, &nonce, server)?;
                self.state = State::ScramFinalSent { server_signature };
                Ok(Some(message))
            }
            State::ScramFinalSent { server_signature } => {
                let text = scram_text(server)?;
                if let Some(e) = text.strip_prefix("e=") {
                    return Err(Error::auth(format!(
                        "SASL {} authentication of user `{}` failed: the broker says `{e}`",
                        self.creds.mechanism, self.creds.username
                    )));
                }
                let v = attribute(text, 'v')
                    .ok_or_else(|| malformed("server-final-message without a verifier (v=)"))?;
                let v = STANDARD
                    .decode(v)
                    .map_err(|_| malformed("the server signature is not base64"))?;
                // Constant time, though the signature is no secret once sent.
                if !constant_time_eq(&v, &server_signature) {
                    return Err(Error::auth(format!(
                        "SASL {}: the broker's signature does not match: it does not know user `{}`'s password, so it may not be the broker you meant to reach",
                        self.creds.mechanism, self.creds.username
                    )));
                }
                Ok(None)
            }
            State::Start | State::Done => Err(Error::broker(
                "SASL: the broker sent more authentication messages than the mechanism has",
            )),
        }
    }

    /// client-final-message and the ServerSignature to expect (RFC 5802 section 3).
    fn client_final(
        &self,
        client_first_bare: &str,
        nonce: &str,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let server_first = scram_text(server_first)?;
        if server_first.starts_with("m=") {
            return Err(malformed(
                "the broker requires a SCRAM extension this client does not know",
            ));
        }
        if let Some(e) = server_first.strip_prefix("e=") {
            return Err(Error::auth(format!(
                "SASL {} authentication of user `{}` failed: the broker says `{e}`",
                self.creds.mechanism, self.creds.username
            )));
        }
        let combined = attribute(server_first, 'r')
            .ok_or_else(|| malformed("server-first-message without a nonce (r=)"))?;
        if !combined.starts_with(nonce) || combined.len() == nonce.len() {
            return Err(malformed("the broker's nonce does not extend the client's"));
        }
        let salt = attribute(server_first, 's')
            .ok_or_else(|| malformed("server-first-message without a salt (s=)"))?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| malformed("the salt is not base64"))?;
        let iterations: u32 = attribute(server_first, 'i')
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| malformed("server-first-message without an iteration count (i=)"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(malformed(&format!(
                "the broker asks for {iterations} iterations; this client accepts {MIN_ITERATIONS} to {MAX_ITERATIONS}"
            )));
        }
        // c=biws is base64("n,,"): no channel binding, no authzid.
        let without_proof = format!("c=biws,r={combined}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let password = self.creds.password.expose().as_bytes();
        let (proof, server_signature) = match self.creds.mechanism {
            SaslMechanism::ScramSha256 => {
                proof::<Sha256>(password, &salt, iterations, auth_message.as_bytes())
            }
            SaslMechanism::ScramSha512 => {
                proof::<Sha512>(password, &salt, iterations, auth_message.as_bytes())
            }
            SaslMechanism::Plain => {
                return Err(Error::broker("SASL PLAIN has no second step"));
            }
        };
        let message = format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes();
        Ok((message, server_signature))
    }
}

/// ClientProof and ServerSignature for a password, salt, iteration count and AuthMessage.
fn proof<D>(password: &[u8], salt: &[u8], iterations: u32, auth: &[u8]) -> (Vec<u8>, Vec<u8>)
where
    D: EagerHash + Digest,
{
    let mut salted = vec![0u8; <D as Digest>::output_size()];
    pbkdf2::pbkdf2_hmac::<D>(password, salt, iterations, &mut salted);
    let client_key = hmac::<D>(&salted, b"Client Key");
    let stored_key = D::digest(&client_key).to_vec();
    let client_signature = hmac::<D>(&stored_key, auth);
    let proof = client_key
        .iter()
        .zip(&client_signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hmac::<D>(&salted, b"Server Key");
    (proof, hmac::<D>(&server_key, auth))
}

fn hmac<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail; an empty MAC would fail the exchange.
    match <Hmac<D> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn scram_text(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|_| malformed("the broker's SCRAM message is not UTF-8"))
}

/// The value of `name=` in a comma-separated SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

fn malformed(what: &str) -> Error {
    Error::broker(format!("SASL SCRAM: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(mechanism: SaslMechanism, user: &str, password: &str) -> Credentials {
        Credentials {
            mechanism,
            username: user.into(),
            password: Secret::new(password),
        }
    }

    /// The SCRAM-SHA-256 exchange printed in RFC 7677, section 3.
    #[test]
    fn scram_sha_256_matches_the_rfc_7677_example() {
        let c = creds(SaslMechanism::ScramSha256, "user", "pencil");
        let mut ex = Exchange::new(&c);
        let first = ex.first_with_nonce("rOprNGfwEbeRWgbNEkqO").expect("first");
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = ex.next(server_first).expect("final").expect("a message");
        assert_eq!(
            String::from_utf8_lossy(&client_final),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let done = ex
            .next(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("the server's signature verifies");
        assert!(done.is_none());
    }

    #[test]
    fn a_server_that_does_not_know_the_password_is_refused() {
        let c = creds(SaslMechanism::ScramSha256, "user", "pencil");
        let mut ex = Exchange::new(&c);
        ex.first_with_nonce("rOprNGfwEbeRWgbNEkqO").expect("first");
        ex.next(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .expect("final");
        let e = ex
            .next(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect_err("a wrong signature");
        assert!(e.is_auth(), "{e}");
    }

    #[test]
    fn malformed_or_weak_server_messages_are_refused() {
        let c = creds(SaslMechanism::ScramSha512, "a=b,c", "pw");
        for server_first in [
            &b"r=someone-elses-nonce,s=c2FsdA==,i=4096"[..],
            b"r=NONCE,s=c2FsdA==,i=4096",
            b"r=NONCEmore,s=c2FsdA==,i=1",
            b"r=NONCEmore,s=not base64,i=4096",
            b"r=NONCEmore,i=4096",
            b"m=ext,r=NONCEmore,s=c2FsdA==,i=4096",
            b"\xff\xfe",
        ] {
            let mut ex = Exchange::new(&c);
            let first = ex.first_with_nonce("NONCE").expect("first");
            assert_eq!(first, b"n,,n=a=3Db=2Cc,r=NONCE", "user name escaped");
            let e = ex.next(server_first).expect_err("refused");
            let text = format!("{e} {e:?}");
            assert!(!text.contains("pw\""), "{text}");
        }
    }

    #[test]
    fn plain_sends_user_and_password_once() {
        let c = creds(SaslMechanism::Plain, "alice", "secret");
        let mut ex = Exchange::new(&c);
        assert_eq!(ex.first().expect("first"), b"\0alice\0secret");
        assert!(ex.next(b"").expect("done").is_none());
        assert!(ex.next(b"").is_err(), "nothing after the end");
    }

    #[test]
    fn the_nonce_is_fresh_each_time() {
        let c = creds(SaslMechanism::ScramSha512, "u", "p");
        let a = Exchange::new(&c).first().expect("first");
        let b = Exchange::new(&c).first().expect("first");
        assert_ne!(a, b);
        assert!(format!("{c:?}").contains("u") && !format!("{c:?}").contains("\"p\""));
    }
}
