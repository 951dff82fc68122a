//! Request signing and credentials for the native (non-OpenAI-wire) providers.
//!
//! Pure building blocks, not wired into the proxy: each signer takes the request it is about to send and
//! returns the headers to add; nothing here does I/O except the token exchanges in [`token_cache`].
//!
//! - [`sigv4`]: AWS Signature Version 4 (Bedrock, service `bedrock`).
//! - [`tc3`]: Tencent Cloud TC3-HMAC-SHA256 (Hunyuan native API 3.0).
//! - [`jwt`]: Google service-account JSON → RS256 JWT assertion for the OAuth2 JWT-bearer grant (Vertex AI).
//! - [`token_cache`]: a single-flight cache of OAuth-style access tokens, with the two exchanges that feed it
//!   (Vertex JWT bearer, Baidu Qianfan v1 client credentials).
//!
//! Secrets travel as [`Secret`](crate::config::Secret) and the headers that carry them are marked sensitive;
//! no error message or `Debug` output here contains a key, a token or a signature input that holds one.

mod calendar;
pub mod jwt;
pub mod sigv4;
pub mod tc3;
pub mod token_cache;

use ring::hmac;
use sha2::{Digest, Sha256};

/// HMAC-SHA256 of `data` under `key` (the step both SigV4 and TC3 chain to derive their signing keys).
fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Lowercase hex SHA-256 of `data`.
fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sha256_hex_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
