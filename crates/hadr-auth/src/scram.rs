//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL
//! speaks it inside AuthenticationSASL / SASLContinue / SASLFinal:
//!
//! ```text
//! client-first  n,,n=,r=<client nonce>                  -> ScramStart::client_first
//! server-first  r=<client+server nonce>,s=<salt>,i=4096 <-
//! client-final  c=<binding>,r=<nonce>,p=<proof>          -> ScramWaitFinal::client_final
//! server-final  v=<server signature>                     <-
//! ```
//!
//! Each state is a value consumed by the next message, so an exchange
//! cannot be driven out of order. The server nonce comes from the caller
//! (the OS RNG there), which keeps this module deterministic for tests.
//!
//! Channel binding (`tls-server-end-point`, RFC 5929): offered as
//! `SCRAM-SHA-256-PLUS` only on TLS; a client that says `y` ("I could
//! bind, but you cannot") while PLUS was offered is refused, because a
//! man in the middle stripping PLUS from the list is what `y` reveals.
//!
//! The user name in the SCRAM message is ignored, as in PostgreSQL: the
//! StartupMessage's user is the one authenticated.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::verifier::{hmac, sha256, Verifier};

/// The mechanism without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The mechanism with channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel binding type supported (what libpq and pgjdbc use).
pub const TLS_SERVER_END_POINT: &str = "tls-server-end-point";

/// SQLSTATE 08P01: the client broke the protocol.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE 28P01: wrong password (or no such user: the same answer).
pub const INVALID_PASSWORD: &str = "28P01";

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client chose a mechanism that was not offered.
    #[error("client selected an invalid SASL authentication mechanism")]
    Mechanism,
    /// A message does not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// `a=`: PostgreSQL does not support authorisation identities either.
    #[error("client uses authorization identity, but it is not supported")]
    AuthzId,
    /// The client said `y` while the server offered channel binding: a
    /// downgrade (or a client bug).
    #[error("SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not, and this server does")]
    Downgrade,
    /// Channel binding asked for where it cannot be, or with another type.
    #[error("SCRAM channel binding negotiation error: {0}")]
    Binding(&'static str),
    /// The channel binding data is not this connection's.
    #[error("SCRAM channel binding check failed")]
    BindingMismatch,
    /// The final message's nonce is not the exchange's.
    #[error("malformed SCRAM message: unexpected SCRAM nonce")]
    Nonce,
    /// Wrong proof, or a user that does not exist or has no password.
    #[error("password authentication failed")]
    Failed,
}

impl ScramError {
    /// The SQLSTATE to answer with (PostgreSQL's choice for each).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ScramError::Failed => INVALID_PASSWORD,
            _ => PROTOCOL_VIOLATION,
        }
    }
}

/// What the exchange checks the proof against.
#[derive(Clone, Debug)]
pub struct Credentials {
    verifier: Verifier,
    /// False for an unknown user or one without a password: the exchange
    /// runs in full (same messages, same work) and fails at the proof.
    genuine: bool,
}

impl Credentials {
    /// A role's stored verifier.
    pub fn real(verifier: Verifier) -> Credentials {
        Credentials {
            verifier,
            genuine: true,
        }
    }

    /// For a user that does not exist or cannot log in with a password:
    /// a salt derived from the name and the node's `secret`.
    pub fn fake(secret: &[u8], user: &str) -> Credentials {
        Credentials {
            verifier: Verifier::fake(secret, user),
            genuine: false,
        }
    }
}

/// The mechanisms to offer in AuthenticationSASL, most preferred first.
pub fn mechanisms(tls: bool) -> Vec<String> {
    let mut m = Vec::new();
    if tls {
        m.push(SCRAM_SHA_256_PLUS.to_string());
    }
    m.push(SCRAM_SHA_256.to_string());
    m
}

/// A server nonce from random bytes (18 or more, from the OS RNG).
pub fn nonce(random: &[u8]) -> String {
    B64.encode(random)
}

/// Waiting for the client-first message.
#[derive(Debug)]
pub struct ScramStart {
    creds: Credentials,
    /// The TLS `tls-server-end-point` data; None on a plain connection.
    end_point: Option<Vec<u8>>,
    server_nonce: String,
}

/// Waiting for the client-final message.
#[derive(Debug)]
pub struct ScramWaitFinal {
    creds: Credentials,
    /// What `c=` must decode to: the GS2 header, then the binding data.
    expected_binding: Vec<u8>,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

/// A nonce is printable ASCII without commas (RFC 5802 §7).
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl ScramStart {
    /// Start an exchange. `end_point`: the connection's TLS server end
    /// point, None without TLS. `server_nonce`: at least 18 random bytes,
    /// base64-encoded (any printable ASCII without commas is accepted).
    pub fn new(creds: Credentials, end_point: Option<Vec<u8>>, server_nonce: String) -> ScramStart {
        ScramStart {
            creds,
            end_point,
            server_nonce,
        }
    }

    /// The mechanisms to offer.
    pub fn mechanisms(&self) -> Vec<String> {
        mechanisms(self.end_point.is_some())
    }

    /// The client chose `mechanism` and sent its first message: answer
    /// with server-first.
    pub fn client_first(
        self,
        mechanism: &str,
        data: &[u8],
    ) -> Result<(ScramWaitFinal, Vec<u8>), ScramError> {
        let plus = match mechanism {
            SCRAM_SHA_256 => false,
            SCRAM_SHA_256_PLUS if self.end_point.is_some() => true,
            _ => return Err(ScramError::Mechanism),
        };
        let msg = std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        let binding = match flag {
            "n" => {
                if plus {
                    return Err(ScramError::Binding(
                        "the client selected SCRAM-SHA-256-PLUS but sent no channel binding",
                    ));
                }
                None
            }
            "y" => {
                if plus {
                    return Err(ScramError::Binding(
                        "the client selected SCRAM-SHA-256-PLUS but sent no channel binding",
                    ));
                }
                if self.end_point.is_some() {
                    return Err(ScramError::Downgrade);
                }
                None
            }
            f => {
                let name = f
                    .strip_prefix("p=")
                    .ok_or(ScramError::Malformed("unexpected channel-binding flag"))?;
                if !plus {
                    return Err(ScramError::Binding(
                        "the client requires channel binding but did not select SCRAM-SHA-256-PLUS",
                    ));
                }
                if name != TLS_SERVER_END_POINT {
                    return Err(ScramError::Binding("unsupported channel binding type"));
                }
                self.end_point.clone()
            }
        };
        if !authzid.is_empty() {
            return Err(ScramError::AuthzId);
        }
        // client-first-bare: [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(',');
        let user = attrs.next().unwrap_or_default();
        if user.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        }
        if !user.starts_with("n=") {
            return Err(ScramError::Malformed("expected the user name attribute"));
        }
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected the nonce attribute"))?;
        if !valid_nonce(client_nonce) {
            return Err(ScramError::Malformed("invalid client nonce"));
        }
        let gs2_header = &msg[..msg.len() - bare.len()];
        let mut expected_binding = gs2_header.as_bytes().to_vec();
        if let Some(ep) = binding {
            expected_binding.extend_from_slice(&ep);
        }
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let v = &self.creds.verifier;
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&v.salt), v.iterations);
        let out = server_first.clone().into_bytes();
        Ok((
            ScramWaitFinal {
                creds: self.creds,
                expected_binding,
                nonce,
                client_first_bare: bare.to_string(),
                server_first,
            },
            out,
        ))
    }
}

impl ScramWaitFinal {
    /// The client-final message: check the binding, the nonce and the
    /// proof; answer with server-final.
    pub fn client_final(self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("expected the proof attribute"))?;
        let mut attrs = without_proof.split(',');
        let binding =
            attrs
                .next()
                .and_then(|a| a.strip_prefix("c="))
                .ok_or(ScramError::Malformed(
                    "expected the channel binding attribute",
                ))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected the nonce attribute"))?;
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("invalid channel binding data"))?;
        if !bool::from(binding.as_slice().ct_eq(self.expected_binding.as_slice())) {
            return Err(ScramError::BindingMismatch);
        }
        if nonce != self.nonce {
            return Err(ScramError::Nonce);
        }
        let proof = B64
            .decode(proof)
            .ok()
            .and_then(|p| <[u8; 32]>::try_from(p.as_slice()).ok())
            .ok_or(ScramError::Malformed("invalid proof"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let v = &self.creds.verifier;
        let signature = hmac(&v.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key
            .iter_mut()
            .zip(proof.iter().zip(signature.iter()))
        {
            *k = p ^ s;
        }
        let ok = sha256(&client_key)[..].ct_eq(&v.stored_key[..]);
        if !bool::from(ok) || !self.creds.genuine {
            return Err(ScramError::Failed);
        }
        let server_signature = hmac(&v.server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The client side, for tests of the server side (and of the messages a
/// client must send); not used by the server.
pub mod client {
    use super::*;

    /// The client-final message for `password`, given the client-first-bare
    /// and GS2 header it sent, the server-first it got, and the binding data.
    pub fn client_final(
        password: &str,
        gs2_header: &str,
        binding_data: &[u8],
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let mut attrs = server_first.split(',');
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .unwrap_or("");
        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default();
        let iterations = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .unwrap_or(4096);
        let mut cb = gs2_header.as_bytes().to_vec();
        cb.extend_from_slice(binding_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(cb));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let salted = crate::verifier::salted_password(password, &salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let signature = hmac(&sha256(&client_key), &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

    fn rfc_creds() -> Credentials {
        let salt = B64.decode(RFC_SALT).unwrap();
        Credentials::real(Verifier::new("pencil", &salt, 4096))
    }

    /// RFC 7677 §3, message for message.
    #[test]
    fn rfc7677_test_vector() {
        let s = ScramStart::new(rfc_creds(), None, RFC_SERVER_NONCE.into());
        assert_eq!(s.mechanisms(), vec!["SCRAM-SHA-256"]);
        let (w, server_first) = s
            .client_first("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        assert_eq!(
            String::from_utf8(server_first).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = w
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(
            String::from_utf8(server_final).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn a_wrong_proof_fails() {
        let s = ScramStart::new(rfc_creds(), None, RFC_SERVER_NONCE.into());
        let (w, _) = s
            .client_first("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        // The RFC's proof with its last byte changed.
        let e = w
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=")
            .unwrap_err();
        assert_eq!(e, ScramError::Failed);
        assert_eq!(e.sqlstate(), "28P01");
    }

    /// Run an exchange as a client with `password` and these choices.
    fn exchange(
        creds: Credentials,
        tls: Option<&[u8]>,
        mechanism: &str,
        gs2: &str,
        client_binding: &[u8],
        password: &str,
    ) -> Result<Vec<u8>, ScramError> {
        let s = ScramStart::new(creds, tls.map(<[u8]>::to_vec), "SERVERNONCE".into());
        let bare = "n=,r=CLIENTNONCE";
        let (w, sf) = s.client_first(mechanism, format!("{gs2}{bare}").as_bytes())?;
        let sf = String::from_utf8(sf).unwrap();
        let cf = client::client_final(password, gs2, client_binding, bare, &sf);
        w.client_final(cf.as_bytes())
    }

    #[test]
    fn the_postgresql_verifier_logs_in_with_its_password() {
        let v = Verifier::parse(crate::verifier::tests_support::PG_PENCIL).unwrap();
        let ok = exchange(
            Credentials::real(v.clone()),
            None,
            SCRAM_SHA_256,
            "n,,",
            b"",
            "pencil",
        );
        assert!(ok.unwrap().starts_with(b"v="));
        let bad = exchange(Credentials::real(v), None, SCRAM_SHA_256, "n,,", b"", "pen");
        assert_eq!(bad, Err(ScramError::Failed));
    }

    #[test]
    fn an_unknown_user_fails_at_the_proof_with_a_stable_salt() {
        let first = |user: &str| {
            let s = ScramStart::new(Credentials::fake(b"node", user), None, "N".into());
            let (_, sf) = s.client_first(SCRAM_SHA_256, b"n,,n=,r=C").unwrap();
            String::from_utf8(sf).unwrap()
        };
        assert_eq!(first("ghost"), first("ghost"));
        assert_ne!(first("ghost"), first("other"));
        assert!(first("ghost").ends_with(",i=4096"));
        // Even the password that would match the fake keys cannot exist;
        // any proof fails, with the same error as a wrong password.
        let r = exchange(
            Credentials::fake(b"node", "ghost"),
            None,
            SCRAM_SHA_256,
            "n,,",
            b"",
            "anything",
        );
        assert_eq!(r, Err(ScramError::Failed));
    }

    #[test]
    fn channel_binding_on_tls() {
        let ep = b"server-cert-hash-32-bytes-long..";
        let creds = rfc_creds;
        // Offered only on TLS.
        assert_eq!(mechanisms(true), vec![SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
        // PLUS with the right end point.
        let gs2 = "p=tls-server-end-point,,";
        assert!(exchange(creds(), Some(ep), SCRAM_SHA_256_PLUS, gs2, ep, "pencil").is_ok());
        // PLUS with another certificate's hash: a man in the middle.
        assert_eq!(
            exchange(
                creds(),
                Some(ep),
                SCRAM_SHA_256_PLUS,
                gs2,
                b"other",
                "pencil"
            ),
            Err(ScramError::BindingMismatch)
        );
        // PLUS without TLS is not offered.
        assert_eq!(
            exchange(creds(), None, SCRAM_SHA_256_PLUS, gs2, b"", "pencil"),
            Err(ScramError::Mechanism)
        );
        // "y" on TLS: the client saw no PLUS, which we offered: downgrade.
        assert_eq!(
            exchange(creds(), Some(ep), SCRAM_SHA_256, "y,,", b"", "pencil"),
            Err(ScramError::Downgrade)
        );
        // "y" without TLS is fine; "n" is fine either way.
        assert!(exchange(creds(), None, SCRAM_SHA_256, "y,,", b"", "pencil").is_ok());
        assert!(exchange(creds(), Some(ep), SCRAM_SHA_256, "n,,", b"", "pencil").is_ok());
        // p= with the plain mechanism, or another binding type.
        assert!(matches!(
            exchange(creds(), Some(ep), SCRAM_SHA_256, gs2, ep, "pencil"),
            Err(ScramError::Binding(_))
        ));
        assert!(matches!(
            exchange(
                creds(),
                Some(ep),
                SCRAM_SHA_256_PLUS,
                "p=tls-unique,,",
                ep,
                "pencil"
            ),
            Err(ScramError::Binding(_))
        ));
        // A c= that claims "n" after a PLUS start does not match either.
        let s = ScramStart::new(creds(), Some(ep.to_vec()), "S".into());
        let (w, sf) = s
            .client_first(SCRAM_SHA_256_PLUS, b"p=tls-server-end-point,,n=,r=C")
            .unwrap();
        let cf = client::client_final(
            "pencil",
            "n,,",
            b"",
            "n=,r=C",
            &String::from_utf8(sf).unwrap(),
        );
        assert_eq!(
            w.client_final(cf.as_bytes()),
            Err(ScramError::BindingMismatch)
        );
    }

    #[test]
    fn malformed_messages_are_protocol_violations() {
        for bad in [
            &b""[..],
            b"n",
            b"n,",
            b"x,,n=,r=abc",
            b"n,a=admin,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=,",
            b"n,,n=,r=",
            b"\xff,,n=,r=a",
        ] {
            let s = ScramStart::new(rfc_creds(), None, "S".into());
            let e = s.client_first(SCRAM_SHA_256, bad).unwrap_err();
            assert_eq!(e.sqlstate(), PROTOCOL_VIOLATION, "{bad:?}: {e}");
        }
        let s = ScramStart::new(rfc_creds(), None, "S".into());
        assert_eq!(
            s.client_first("PLAIN", b"n,,n=,r=a").unwrap_err(),
            ScramError::Mechanism
        );
        for bad in [
            &b""[..],
            b"c=biws,r=aS",
            b"c=biws,p=AAAA",
            b"r=aS,c=biws,p=AAAA",
            b"c=!!,r=aS,p=AAAA",
            b"c=biws,r=aS,p=!!",
            b"c=biws,r=aS,p=AAAA",
            b"c=biws,r=aX,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        ] {
            let s = ScramStart::new(rfc_creds(), None, "S".into());
            let (w, _) = s.client_first(SCRAM_SHA_256, b"n,,n=,r=a").unwrap();
            let e = w.client_final(bad).unwrap_err();
            assert_eq!(e.sqlstate(), PROTOCOL_VIOLATION, "{bad:?}: {e}");
        }
    }
}
