//! Authentication: argon2id passwords, HS256 JWTs, agent secrets, the
//! login throttle and the [`AuthUser`] extractor that every user route
//! takes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::store::{Role, User};

/// Hashes a password with argon2id (default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Checks a password against a PHC string; false on any mismatch or a
/// malformed hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of a secret, lowercase hex (agent secrets and enrollment tokens
/// are high-entropy, so a fast hash is the right tool for them).
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two strings of equal length.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The claims of a user token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// E-mail at issue time.
    pub email: String,
    /// Role at issue time (the current role is read from the store).
    pub role: String,
    /// Issued at (unix s).
    pub iat: i64,
    /// Expires at (unix s).
    pub exp: i64,
    /// The user's `token_version` at issue time; a token whose version is
    /// not the user's current one is refused (tokens from before this
    /// field existed read as 0).
    #[serde(default)]
    pub ver: i64,
}

/// Clock skew tolerated for a token's `iat` lying in the future.
const IAT_SKEW_SECS: i64 = 60;

/// JWT signing and verification with the algorithm pinned to HS256.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Keys from a secret.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        validation.leeway = 0;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A token for `user`, valid for the configured lifetime.
    pub fn issue(&self, user: &User, now_secs: i64) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user.id.to_string(),
            email: user.email.clone(),
            role: user.role.as_str().to_owned(),
            iat: now_secs,
            exp: now_secs + self.ttl_secs(),
            ver: user.token_version,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs()).unwrap_or(86_400)
    }

    /// Verifies a token's signature, algorithm and expiry, and caps its
    /// lifetime: a token whose `exp` lies more than the configured lifetime
    /// after its `iat`, or whose `iat` lies in the future, is refused even
    /// if the key signed it.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Claims, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        ApiError::unauthorized("token expired, log in again")
                    }
                    _ => ApiError::unauthorized("invalid token"),
                }
            })?;
        if claims.exp.saturating_sub(claims.iat) > self.ttl_secs() {
            return Err(ApiError::unauthorized(
                "token lifetime exceeds the server's limit, log in again",
            ));
        }
        if claims.iat > now_secs.saturating_add(IAT_SKEW_SECS) {
            return Err(ApiError::unauthorized("token issued in the future"));
        }
        Ok(claims)
    }
}

/// The authenticated user of a request (every user route takes one).
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user's id.
    pub id: Uuid,
    /// E-mail.
    pub email: String,
    /// Current role.
    pub role: Role,
}

impl AuthUser {
    /// 403 unless the user has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {role} role, you are {}",
                self.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <token> header")
        })?;
        let header = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("agent") {
            return Err(ApiError::unauthorized(
                "agent credentials are not accepted on user routes",
            ));
        }
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthorized(
                "expected Authorization: Bearer <token>",
            ));
        }
        let claims = state.jwt.verify(token.trim(), crate::now_ms() / 1000)?;
        let id =
            Uuid::parse_str(&claims.sub).map_err(|_| ApiError::unauthorized("invalid token"))?;
        let user = state
            .store
            .user_by_id(id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
        if user.disabled_at.is_some() {
            return Err(ApiError::unauthorized("this account is disabled"));
        }
        if claims.ver != user.token_version {
            return Err(ApiError::unauthorized(
                "session ended (password, role or account changed), log in again",
            ));
        }
        Ok(AuthUser {
            id: user.id,
            email: user.email,
            role: user.role,
        })
    }
}

struct Window {
    failures: u32,
    started: Instant,
}

/// Failed-login throttle per client IP and per account: after `max`
/// failures inside the window, attempts are refused (429) until the window
/// that began with the first failure ends. A success clears the account.
///
/// The counters live in this process (a replica-local defence); the audit
/// log keeps every attempt.
pub struct LoginThrottle {
    per_account: u32,
    per_ip: u32,
    window: Duration,
    entries: Mutex<HashMap<String, Window>>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle").finish_non_exhaustive()
    }
}

/// Keeps the throttle's memory bounded.
const MAX_THROTTLE_ENTRIES: usize = 100_000;

impl LoginThrottle {
    /// A throttle with these limits.
    pub fn new(per_account: u32, per_ip: u32, window: Duration) -> Self {
        LoginThrottle {
            per_account: per_account.max(1),
            per_ip: per_ip.max(1),
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(ip: &str, account: &str) -> [(String, bool); 2] {
        [
            (format!("ip:{ip}"), true),
            (format!("acct:{account}"), false),
        ]
    }

    /// `Err(retry_after_secs)` when either key is over its limit.
    pub fn check(&self, ip: &str, account: &str, now: Instant) -> Result<(), u64> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (key, is_ip) in Self::keys(ip, account) {
            let max = if is_ip { self.per_ip } else { self.per_account };
            if let Some(w) = entries.get(&key) {
                let elapsed = now.saturating_duration_since(w.started);
                if elapsed < self.window && w.failures >= max {
                    return Err((self.window - elapsed).as_secs().max(1));
                }
            }
        }
        Ok(())
    }

    /// Counts a failed attempt.
    pub fn failure(&self, ip: &str, account: &str, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_THROTTLE_ENTRIES {
            let window = self.window;
            entries.retain(|_, w| now.saturating_duration_since(w.started) < window);
        }
        for (key, _) in Self::keys(ip, account) {
            let w = entries.entry(key).or_insert(Window {
                failures: 0,
                started: now,
            });
            if now.saturating_duration_since(w.started) >= self.window {
                *w = Window {
                    failures: 0,
                    started: now,
                };
            }
            w.failures += 1;
        }
    }

    /// Clears the account's counter after a successful login.
    pub fn success(&self, account: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&format!("acct:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn throttle_blocks_after_limit_and_recovers() {
        let t = LoginThrottle::new(2, 3, Duration::from_secs(60));
        let now = Instant::now();
        assert!(t.check("1.1.1.1", "a", now).is_ok());
        t.failure("1.1.1.1", "a", now);
        t.failure("1.1.1.1", "a", now);
        assert!(t.check("1.1.1.1", "a", now).is_err());
        assert!(t.check("2.2.2.2", "b", now).is_ok());
        t.failure("1.1.1.1", "b", now);
        // the IP is now at 3 failures: any account from it is refused
        assert!(t.check("1.1.1.1", "c", now).is_err());
        assert!(
            t.check("1.1.1.1", "c", now + Duration::from_secs(61))
                .is_ok()
        );
    }

    fn signed(keys: &JwtKeys, iat: i64, exp: i64) -> String {
        let claims = Claims {
            sub: Uuid::new_v4().to_string(),
            email: "a@example.com".into(),
            role: "admin".into(),
            iat,
            exp,
            ver: 0,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap()
    }

    #[test]
    fn token_lifetime_is_capped_at_verification() {
        let keys = JwtKeys::new(&[7u8; 32], Duration::from_secs(86_400));
        let now = crate::now_ms() / 1000;
        let user = User::new("a@example.com", String::new(), Role::Admin, 0);
        let issued = keys.issue(&user, now).unwrap();
        assert_eq!(keys.verify(&issued, now).unwrap().exp - now, 86_400);
        // signed by the key, but valid for a year: refused
        let long = signed(&keys, now, now + 365 * 86_400);
        let e = keys.verify(&long, now).unwrap_err();
        assert_eq!(e.status.as_u16(), 401);
        // issued in the future (beyond the skew): refused
        let future = signed(&keys, now + 3600, now + 7200);
        assert!(keys.verify(&future, now).is_err());
        assert!(keys.verify(&signed(&keys, now + 30, now + 60), now).is_ok());
        // expired
        assert!(
            keys.verify(&signed(&keys, now - 100, now - 10), now)
                .is_err()
        );
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
    }
}
