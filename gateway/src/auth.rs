//! Virtual keys: hashing, generation, and the lookup from a request's key to its [`Principal`].
//!
//! Keys are kept only as SHA-256 digests; the raw key exists in memory only while a request is checked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use http::HeaderMap;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use crate::config::{AllowedModels, KeyConfig, TenantConfig};
use crate::error::GatewayError;

/// Prefix of keys made by `tollgate keys new`, so leaked keys are recognisable by secret scanners.
pub const KEY_PREFIX: &str = "tg-";

/// SHA-256 of a virtual key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    #[must_use]
    pub fn of(raw_key: &str) -> Self {
        Self(Sha256::digest(raw_key.as_bytes()).into())
    }

    /// Parses 64 hex characters (either case); `None` for anything else.
    #[must_use]
    pub fn from_hex(hex_digest: &str) -> Option<Self> {
        let bytes = hex::decode(hex_digest.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// A fresh random virtual key (`tg-` + 40 alphanumerics, ~238 bits) and its hash.
#[must_use]
pub fn generate_key() -> (String, KeyHash) {
    let key = format!(
        "{KEY_PREFIX}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    );
    let hash = KeyHash::of(&key);
    (key, hash)
}

/// Who is calling: resolved from a virtual key.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's configured name; recorded on events in place of the key.
    pub key_id: String,
    pub tenant: String,
    pub team: String,
    pub models: AllowedModels,
    /// Tags every deployment this caller is routed to must carry.
    pub require_tags: crate::config::Tags,
}

/// Virtual keys by hash: the config file's, plus those issued through the admin API (control events).
///
/// Lookups read an immutable map swapped atomically on every change, so the request path never takes a lock;
/// a revocation is in effect for every request that starts after the swap.
#[derive(Debug, Default)]
pub struct KeyStore {
    by_hash: ArcSwap<HashMap<KeyHash, Arc<Principal>>>,
    /// Keys declared in the config file: fixed, never changed through the admin API.
    configured: Vec<(KeyHash, Arc<Principal>)>,
    tenants: BTreeMap<String, TenantConfig>,
    /// Keys issued through the admin API, by key id.
    issued: Mutex<BTreeMap<String, Issued>>,
}

/// A key issued through the admin API.
#[derive(Debug, Clone)]
struct Issued {
    hash: KeyHash,
    principal: Arc<Principal>,
    /// The key's own required tags (its principal's also hold its tenant's).
    own_tags: crate::config::Tags,
    limits: tollgate_schemas::control::KeyLimits,
}

/// A key issued through the admin API, as its control event describes it.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub key_id: &'a str,
    pub tenant: &'a str,
    pub team: &'a str,
    pub hash: KeyHash,
    pub models: AllowedModels,
    pub require_tags: &'a crate::config::Tags,
    pub limits: tollgate_schemas::control::KeyLimits,
}

/// One key as the admin API lists it (never the key or its full digest).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub key_id: String,
    pub tenant: String,
    pub team: String,
    /// `config` (declared in the file) or `admin` (issued through the admin API).
    pub source: &'static str,
    /// The first 8 hex characters of the key's SHA-256, to tell keys apart.
    pub sha256_prefix: String,
}

impl KeyStore {
    /// Keys by hash; each principal carries its tenant's routing constraints on top of its own.
    #[must_use]
    pub fn new(keys: &[KeyConfig], tenants: &BTreeMap<String, TenantConfig>) -> Self {
        let configured: Vec<(KeyHash, Arc<Principal>)> = keys
            .iter()
            .map(|k| {
                let principal = principal(
                    tenants,
                    &k.name,
                    &k.tenant,
                    &k.team,
                    k.models.clone(),
                    &k.require_tags,
                );
                (k.hash, Arc::new(principal))
            })
            .collect();
        let store = Self {
            by_hash: ArcSwap::default(),
            configured,
            tenants: tenants.clone(),
            issued: Mutex::new(BTreeMap::new()),
        };
        store.rebuild(&BTreeMap::new());
        store
    }

    fn rebuild(&self, issued: &BTreeMap<String, Issued>) {
        let map: HashMap<KeyHash, Arc<Principal>> = self
            .configured
            .iter()
            .cloned()
            .chain(issued.values().map(|i| (i.hash, i.principal.clone())))
            .collect();
        self.by_hash.store(Arc::new(map));
    }

    /// Whether `key_id` is declared in the config file (the admin API must not change it).
    #[must_use]
    pub fn is_configured(&self, key_id: &str) -> bool {
        self.configured.iter().any(|(_, p)| p.key_id == key_id)
    }

    /// Whether `hash` belongs to any key (a new key must not collide).
    #[must_use]
    pub fn contains_hash(&self, hash: &KeyHash) -> bool {
        self.by_hash.load().contains_key(hash)
    }

    /// Adds or replaces (rotation) an issued key.
    pub fn issue(&self, key: &NewKey<'_>) {
        if self.is_configured(key.key_id) {
            return;
        }
        let p = principal(
            &self.tenants,
            key.key_id,
            key.tenant,
            key.team,
            key.models.clone(),
            key.require_tags,
        );
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.insert(
            key.key_id.to_string(),
            Issued {
                hash: key.hash,
                principal: Arc::new(p),
                own_tags: key.require_tags.clone(),
                limits: key.limits,
            },
        );
        self.rebuild(&issued);
    }

    /// The principal of an issued key.
    #[must_use]
    pub fn principal_of(&self, key_id: &str) -> Option<Arc<Principal>> {
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.get(key_id).map(|i| i.principal.clone())
    }

    /// An issued key's rate limits.
    #[must_use]
    pub fn limits_of(&self, key_id: &str) -> Option<tollgate_schemas::control::KeyLimits> {
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.get(key_id).map(|i| i.limits)
    }

    /// An issued key's own required tags (without its tenant's).
    #[must_use]
    pub fn own_tags_of(&self, key_id: &str) -> Option<crate::config::Tags> {
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.get(key_id).map(|i| i.own_tags.clone())
    }

    /// Revokes an issued key; false when there is none by that id.
    pub fn revoke(&self, key_id: &str) -> bool {
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = issued.remove(key_id).is_some();
        self.rebuild(&issued);
        removed
    }

    /// Every key, config ones first.
    #[must_use]
    pub fn list(&self) -> Vec<KeyInfo> {
        let info = |hash: &KeyHash, p: &Principal, source| KeyInfo {
            key_id: p.key_id.clone(),
            tenant: p.tenant.clone(),
            team: p.team.clone(),
            source,
            sha256_prefix: hash.to_hex()[..8].to_string(),
        };
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        self.configured
            .iter()
            .map(|(h, p)| info(h, p, "config"))
            .chain(
                issued
                    .values()
                    .map(|i| info(&i.hash, &i.principal, "admin")),
            )
            .collect()
    }

    /// Resolves the key sent as `Authorization: Bearer <key>` (OpenAI SDKs), `x-api-key` (Anthropic SDKs) or
    /// `x-goog-api-key` (Google's SDKs; the Gemini route also moves a `?key=` here).
    ///
    /// # Errors
    /// [`GatewayError::MissingApiKey`] when neither header carries a key, [`GatewayError::InvalidApiKey`] when
    /// the key is unknown.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, GatewayError> {
        let key = presented_key(headers).ok_or(GatewayError::MissingApiKey)?;
        self.by_hash
            .load()
            .get(&KeyHash::of(key))
            .cloned()
            .ok_or(GatewayError::InvalidApiKey)
    }
}

/// A principal with its tenant's required tags under its own.
fn principal(
    tenants: &BTreeMap<String, TenantConfig>,
    key_id: &str,
    tenant: &str,
    team: &str,
    models: AllowedModels,
    own_tags: &crate::config::Tags,
) -> Principal {
    let mut require_tags = tenants
        .get(tenant)
        .map(|t| t.require_tags.clone())
        .unwrap_or_default();
    for (name, value) in own_tags {
        require_tags
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
    Principal {
        key_id: key_id.to_string(),
        tenant: tenant.to_string(),
        team: team.to_string(),
        models,
        require_tags,
    }
}

/// The admin key (master key of `/admin/*`), kept as its hash.
#[derive(Debug, Clone, Copy)]
pub struct AdminKey(Option<KeyHash>);

impl AdminKey {
    #[must_use]
    pub fn new(hash: Option<KeyHash>) -> Self {
        Self(hash)
    }

    /// Checks the admin key sent as `Authorization: Bearer <key>` or `x-api-key`.
    ///
    /// # Errors
    /// [`GatewayError::AdminDisabled`] when no admin key is configured, [`GatewayError::NotAdmin`] when the
    /// key is missing or wrong (virtual keys are never admin keys).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        let expected = self.0.ok_or(GatewayError::AdminDisabled)?;
        let sent = presented_key(headers).ok_or(GatewayError::NotAdmin)?;
        let got = KeyHash::of(sent);
        // Compare every byte: no early exit on the first difference.
        let diff = got
            .0
            .iter()
            .zip(expected.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(GatewayError::NotAdmin)
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>`, else `x-api-key`, else `x-goog-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .or_else(|| headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(raw: &str) -> KeyStore {
        KeyStore::new(
            &[KeyConfig {
                name: "ci".into(),
                tenant: "acme".into(),
                team: "search".into(),
                hash: KeyHash::of(raw),
                models: AllowedModels::All,
                require_tags: Default::default(),
                limits: Default::default(),
            }],
            &BTreeMap::new(),
        )
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn generated_keys_are_unique_prefixed_and_hash_to_their_digest() {
        let (a, ha) = generate_key();
        let (b, _) = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == 43);
        assert_eq!(KeyHash::from_hex(&ha.to_hex()), Some(ha));
        assert_eq!(KeyHash::of(&a), ha);
    }

    #[test]
    fn the_admin_key_is_checked_and_off_without_config() {
        let admin = AdminKey::new(Some(KeyHash::of("tg-admin")));
        assert!(admin
            .check(&headers("authorization", "Bearer tg-admin"))
            .is_ok());
        assert!(matches!(
            admin.check(&headers("authorization", "Bearer tg-other")),
            Err(GatewayError::NotAdmin)
        ));
        assert!(matches!(
            admin.check(&HeaderMap::new()),
            Err(GatewayError::NotAdmin)
        ));
        assert!(matches!(
            AdminKey::new(None).check(&headers("x-api-key", "tg-admin")),
            Err(GatewayError::AdminDisabled)
        ));
    }

    #[test]
    fn known_sha256_vector() {
        // sha256("abc") from FIPS 180-2.
        assert_eq!(
            KeyHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(KeyHash::from_hex("abc"), None);
    }

    #[test]
    fn resolves_bearer_and_x_api_key_and_refuses_others() {
        let store = store_with("tg-secret");
        let p = store
            .authenticate(&headers("authorization", "Bearer tg-secret"))
            .unwrap();
        assert_eq!(
            (p.tenant.as_str(), p.team.as_str(), p.key_id.as_str()),
            ("acme", "search", "ci")
        );
        assert!(store
            .authenticate(&headers("x-api-key", "tg-secret"))
            .is_ok());
        assert!(store
            .authenticate(&headers("x-goog-api-key", "tg-secret"))
            .is_ok());
        assert!(matches!(
            store.authenticate(&HeaderMap::new()),
            Err(GatewayError::MissingApiKey)
        ));
        assert!(matches!(
            store.authenticate(&headers("authorization", "Bearer ")),
            Err(GatewayError::MissingApiKey)
        ));
        assert!(matches!(
            store.authenticate(&headers("authorization", "Bearer tg-wrong")),
            Err(GatewayError::InvalidApiKey)
        ));
    }
}
