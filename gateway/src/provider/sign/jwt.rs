//! Google service-account credentials → an RS256-signed JWT assertion for the OAuth2 JWT-bearer grant
//! (Vertex AI).
//!
//! [`ServiceAccountSigner::from_json`] reads the key file Google hands out (`client_email`, `private_key` as a
//! PKCS#8 PEM, optional `private_key_id` and `token_uri`); [`ServiceAccountSigner::assertion`] builds
//! `{"alg":"RS256","kid":…,"typ":"JWT"}` . `{"iss","scope","aud","iat","exp"}` with `aud` = the token URI and a
//! one-hour lifetime, and signs it (RSASSA-PKCS1-v1_5 / SHA-256, deterministic). The token exchange itself is
//! [`super::token_cache::exchange_jwt_bearer`].

use std::fmt;
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::json;

use super::calendar::UtcTimestamp;
use crate::error::GatewayError;

/// The scope Vertex AI needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, used when the key file names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime of an assertion (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// The fields of a service-account key file the signer needs (no `Debug`: it holds the private key).
#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// Signs JWT assertions for one service account.
pub struct ServiceAccountSigner {
    client_email: String,
    key_id: Option<String>,
    token_uri: String,
    scope: String,
    key_pair: RsaKeyPair,
}

impl fmt::Debug for ServiceAccountSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountSigner")
            .field("client_email", &self.client_email)
            .field("key_id", &self.key_id)
            .field("token_uri", &self.token_uri)
            .field("scope", &self.scope)
            .field("key_pair", &"***")
            .finish()
    }
}

impl ServiceAccountSigner {
    /// Parses a service-account key file; the scope is [`CLOUD_PLATFORM_SCOPE`].
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when the JSON is malformed or lacks a field, or the key is not an RSA key in
    /// PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM. Messages never quote the file.
    pub fn from_json(json: &str) -> Result<Self, GatewayError> {
        // serde's messages can quote the offending value: report the position only.
        let file: KeyFile = serde_json::from_str(json).map_err(|e| {
            GatewayError::Internal(format!(
                "the service-account key file is not valid ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        Ok(Self {
            key_pair: rsa_key_pair(&file.private_key)?,
            client_email: file.client_email,
            key_id: file.private_key_id.filter(|id| !id.is_empty()),
            token_uri: file
                .token_uri
                .filter(|uri| !uri.is_empty())
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
            scope: CLOUD_PLATFORM_SCOPE.to_owned(),
        })
    }

    /// Requests `scope` (space-separated scopes) instead of [`CLOUD_PLATFORM_SCOPE`].
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    #[must_use]
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The token endpoint named by the key file (the assertion's `aud`).
    #[must_use]
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// A signed assertion issued at `issued_at` (whole seconds) and valid for one hour.
    ///
    /// # Errors
    /// [`GatewayError::Internal`] when the clock is before 1970 or signing fails.
    pub fn assertion(&self, issued_at: SystemTime) -> Result<String, GatewayError> {
        let iat = UtcTimestamp::from_system_time(issued_at)?.unix_seconds();
        // Keys in sorted order, as most JOSE libraries write them.
        let header = match &self.key_id {
            Some(kid) => json!({"alg": "RS256", "kid": kid, "typ": "JWT"}),
            None => json!({"alg": "RS256", "typ": "JWT"}),
        };
        let claims = json!({
            "iss": self.client_email,
            "scope": self.scope,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.rs256(signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    fn rs256(&self, message: &[u8]) -> Result<Vec<u8>, GatewayError> {
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| GatewayError::Internal("RS256 signing failed".into()))?;
        Ok(signature)
    }
}

/// The RSA key in a PEM block: PKCS#8 `PRIVATE KEY` (what Google issues) or PKCS#1 `RSA PRIVATE KEY`.
fn rsa_key_pair(pem: &str) -> Result<RsaKeyPair, GatewayError> {
    let invalid =
        |what: &str| GatewayError::Internal(format!("the service-account private_key {what}"));
    let (label, der) = pem_block(pem).ok_or_else(|| invalid("is not a PEM block"))?;
    let parsed = match label {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        _ => return Err(invalid("is not an RSA private key (PKCS#8 or PKCS#1 PEM)")),
    };
    // ring's rejection reasons are fixed words (e.g. "InvalidEncoding"), never key material.
    parsed.map_err(|rejected| invalid(&format!("was rejected ({rejected})")))
}

/// The label and decoded bytes of the first `-----BEGIN …-----` block.
fn pem_block(pem: &str) -> Option<(&str, Vec<u8>)> {
    let after_begin = pem.split_once("-----BEGIN ")?.1;
    let (label, rest) = after_begin.split_once("-----")?;
    let (body, _) = rest.split_once(&format!("-----END {label}-----"))?;
    let base64: String = body.split_ascii_whitespace().collect();
    let der = STANDARD.decode(base64).ok()?;
    Some((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    use serde_json::Value;
    use std::time::{Duration, UNIX_EPOCH};

    fn fixture(name: &str) -> String {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/google-service-account/"
        );
        std::fs::read_to_string(format!("{dir}{name}")).unwrap()
    }

    fn decode_segment(segment: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    #[test]
    fn assertion_has_googles_claims_and_verifies_with_the_public_key() {
        let file: Value = serde_json::from_str(&fixture("service-account.json")).unwrap();
        let signer = ServiceAccountSigner::from_json(&fixture("service-account.json")).unwrap();
        let iat = 1_700_000_000;
        let token = signer
            .assertion(UNIX_EPOCH + Duration::from_millis(iat * 1000 + 999))
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode_segment(parts[0]),
            json!({"alg": "RS256", "kid": file["private_key_id"], "typ": "JWT"})
        );
        assert_eq!(
            decode_segment(parts[1]),
            json!({
                "iss": file["client_email"],
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "aud": file["token_uri"],
                "iat": iat,
                "exp": iat + 3600,
            })
        );
        // The public key was exported separately when the key was generated (not derived here).
        let public_pem = fixture("public-key.pem");
        let (label, public_der) = pem_block(&public_pem).unwrap();
        assert_eq!(label, "RSA PUBLIC KEY");
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_der)
            .verify(signing_input.as_bytes(), &signature)
            .unwrap();
        let mut tampered = signing_input.into_bytes();
        tampered[0] ^= 1;
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_der)
                .verify(&tampered, &signature)
                .is_err()
        );
    }

    #[test]
    fn rs256_is_deterministic_and_follows_the_issue_time() {
        let signer = ServiceAccountSigner::from_json(&fixture("service-account.json")).unwrap();
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(
            signer.assertion(at(1_000)).unwrap(),
            signer.assertion(at(1_000)).unwrap()
        );
        assert_ne!(
            signer.assertion(at(1_000)).unwrap(),
            signer.assertion(at(1_001)).unwrap()
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let mut file: Value = serde_json::from_str(&fixture("service-account.json")).unwrap();
        let object = file.as_object_mut().unwrap();
        object.remove("token_uri");
        object.remove("private_key_id");
        let signer = ServiceAccountSigner::from_json(&file.to_string())
            .unwrap()
            .with_scope("https://www.googleapis.com/auth/generative-language");
        assert_eq!(signer.token_uri(), DEFAULT_TOKEN_URI);
        let token = signer.assertion(UNIX_EPOCH).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(
            decode_segment(parts[0]),
            json!({"alg": "RS256", "typ": "JWT"})
        );
        assert_eq!(
            decode_segment(parts[1])["scope"],
            "https://www.googleapis.com/auth/generative-language"
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_key() {
        let text = fixture("service-account.json");
        let file: Value = serde_json::from_str(&text).unwrap();
        let pem = file["private_key"].as_str().unwrap();
        let key_line = pem.lines().nth(1).unwrap();

        let signer = ServiceAccountSigner::from_json(&text).unwrap();
        assert!(!format!("{signer:?}").contains(key_line));

        let mut broken = Vec::new();
        // Truncated JSON, a key of the wrong type, a mangled PEM, a non-RSA label, a missing field.
        broken.push(text[..text.len() / 2].to_owned());
        let mut wrong_type = file.clone();
        wrong_type["private_key"] = json!([pem]);
        broken.push(wrong_type.to_string());
        let mut mangled = file.clone();
        mangled["private_key"] = json!(pem.replacen(key_line, &key_line[..10], 1));
        broken.push(mangled.to_string());
        let mut ec = file.clone();
        ec["private_key"] = json!(pem.replace("PRIVATE KEY", "EC PRIVATE KEY"));
        broken.push(ec.to_string());
        let mut missing = file.clone();
        missing.as_object_mut().unwrap().remove("client_email");
        broken.push(missing.to_string());
        for json in broken {
            let message = ServiceAccountSigner::from_json(&json)
                .unwrap_err()
                .to_string();
            assert!(!message.contains(key_line), "{message}");
            assert!(message.contains("service-account"), "{message}");
        }
    }
}
