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

/// Constant-time equality of two strings (`subtle`; the length is not
/// secret: both sides are hex digests).
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
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
        // Expiry is checked against the server's clock in `verify`, not
        // the library's own reading of the system clock.
        validation.validate_exp = false;
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
        if claims.exp < now_secs {
            return Err(ApiError::unauthorized("token expired, log in again"));
        }
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
    /// This user as the actor of a service call from `client`.
    pub fn actor(&self, client: &crate::client_addr::ClientIp) -> crate::service::Actor {
        crate::service::Actor::new(self.email.clone(), Some(client.to_string()))
    }

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
        let claims = state.jwt.verify(token.trim(), state.now_ms() / 1000)?;
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

/// The limits of the [`LoginThrottle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures of one (account, client) pair that cost nothing.
    pub pair_free_failures: u32,
    /// The delay after the first failure beyond the free ones; it doubles
    /// with every further failure of the pair.
    pub pair_base_delay: Duration,
    /// The longest delay of a pair.
    pub pair_max_delay: Duration,
    /// A pair's failures are forgotten after this much quiet.
    pub pair_forget_after: Duration,
    /// Failures of one account, from all clients, within
    /// `account_window`, after which clients that have been failing on
    /// that account are refused until the window ends. Clients that have
    /// not been failing are never refused by this limit.
    pub account_max_failures: u32,
    /// The account-wide window (short).
    pub account_window: Duration,
    /// Failures of one client, over all accounts, within `client_window`
    /// (credential stuffing from one address).
    pub client_max_failures: u32,
    /// The per-client window.
    pub client_window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            pair_free_failures: 3,
            pair_base_delay: Duration::from_secs(1),
            pair_max_delay: Duration::from_secs(15 * 60),
            pair_forget_after: Duration::from_secs(60 * 60),
            account_max_failures: 100,
            account_window: Duration::from_secs(5 * 60),
            client_max_failures: 100,
            client_window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pair {
    failures: u32,
    last_failure: Instant,
    blocked_until: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    started: Instant,
}

impl Window {
    /// Failures inside the window that is current at `now`.
    fn current(&self, now: Instant, len: Duration) -> u32 {
        if now.saturating_duration_since(self.started) < len {
            self.failures
        } else {
            0
        }
    }

    fn remaining(&self, now: Instant, len: Duration) -> Duration {
        len.saturating_sub(now.saturating_duration_since(self.started))
    }

    fn count(w: &mut Window, now: Instant, len: Duration) {
        if now.saturating_duration_since(w.started) >= len {
            *w = Window {
                failures: 0,
                started: now,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[derive(Debug, Default)]
struct ThrottleState {
    pairs: HashMap<(String, String), Pair>,
    accounts: HashMap<String, Window>,
    clients: HashMap<String, Window>,
}

/// Failed-login throttle.
///
/// It is keyed by the (account, client) pair, so an attacker cannot lock
/// anybody else out: a pair's first failures are free, then each further
/// failure doubles the pair's wait (1 s, 2 s, 4 s ... up to 15 min). Two
/// wider limits back it up, and both refuse only clients that have been
/// failing: an account-wide limit (many failures on one account from
/// anywhere, a short window) and a per-client limit across accounts
/// (credential stuffing). A client that has not been failing always gets
/// to try the right password.
///
/// The counters live in this process (a replica-local defence); time is
/// passed in.
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    state: Mutex<ThrottleState>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Keeps each of the throttle's maps bounded.
const MAX_THROTTLE_ENTRIES: usize = 100_000;

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl LoginThrottle {
    /// A throttle with this policy.
    pub fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle {
            policy,
            state: Mutex::new(ThrottleState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ThrottleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after_secs)` when `client` may not try `account` now.
    pub fn check(&self, client: &str, account: &str, now: Instant) -> Result<(), u64> {
        let p = &self.policy;
        let st = self.lock();
        let pair = st
            .pairs
            .get(&(account.to_owned(), client.to_owned()))
            .filter(|e| now.saturating_duration_since(e.last_failure) < p.pair_forget_after);
        if let Some(e) = pair
            && now < e.blocked_until
        {
            return Err(secs_ceil(e.blocked_until - now).max(1));
        }
        let client_w = st.clients.get(client).copied();
        let client_failures = client_w.map_or(0, |w| w.current(now, p.client_window));
        if client_failures == 0 && pair.is_none() {
            // not failing: never refused
            return Ok(());
        }
        if let Some(w) = client_w
            && client_failures >= p.client_max_failures
        {
            return Err(secs_ceil(w.remaining(now, p.client_window)).max(1));
        }
        if let Some(w) = st.accounts.get(account)
            && w.current(now, p.account_window) >= p.account_max_failures
        {
            return Err(secs_ceil(w.remaining(now, p.account_window)).max(1));
        }
        Ok(())
    }

    /// Counts a failed attempt of `client` on `account`.
    pub fn failure(&self, client: &str, account: &str, now: Instant) {
        let p = &self.policy;
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.pairs.len() >= MAX_THROTTLE_ENTRIES {
            let keep = p.pair_forget_after;
            st.pairs
                .retain(|_, e| now.saturating_duration_since(e.last_failure) < keep);
        }
        for (map, len) in [
            (&mut st.accounts, p.account_window),
            (&mut st.clients, p.client_window),
        ] {
            if map.len() >= MAX_THROTTLE_ENTRIES {
                map.retain(|_, w| now.saturating_duration_since(w.started) < len);
            }
        }
        let e = st
            .pairs
            .entry((account.to_owned(), client.to_owned()))
            .or_insert(Pair {
                failures: 0,
                last_failure: now,
                blocked_until: now,
            });
        if now.saturating_duration_since(e.last_failure) >= p.pair_forget_after {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if let Some(over) = e.failures.checked_sub(p.pair_free_failures + 1) {
            let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
            let delay = p
                .pair_base_delay
                .saturating_mul(factor)
                .min(p.pair_max_delay);
            e.blocked_until = now + delay;
        }
        let new = Window {
            failures: 0,
            started: now,
        };
        Window::count(
            st.accounts.entry(account.to_owned()).or_insert(new),
            now,
            p.account_window,
        );
        Window::count(
            st.clients.entry(client.to_owned()).or_insert(new),
            now,
            p.client_window,
        );
    }

    /// Clears the pair after a successful login.
    pub fn success(&self, client: &str, account: &str) {
        self.lock()
            .pairs
            .remove(&(account.to_owned(), client.to_owned()));
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

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            pair_free_failures: 2,
            pair_base_delay: Duration::from_secs(1),
            pair_max_delay: Duration::from_secs(8),
            pair_forget_after: Duration::from_secs(3600),
            account_max_failures: 10,
            account_window: Duration::from_secs(60),
            client_max_failures: 6,
            client_window: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_pair_waits_longer_with_every_failure() {
        let t = LoginThrottle::new(ThrottlePolicy {
            client_max_failures: 100,
            ..policy()
        });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // two free failures, then 1 s, 2 s, 4 s, 8 s, 8 s
        t.failure("c", "a", at(0));
        t.failure("c", "a", at(0));
        assert_eq!(t.check("c", "a", at(0)), Ok(()));
        let mut now = 0;
        for want in [1, 2, 4, 8, 8] {
            t.failure("c", "a", at(now));
            assert_eq!(
                t.check("c", "a", at(now)),
                Err(want),
                "after a failure at {now}"
            );
            assert_eq!(t.check("c", "a", at(now + want)), Ok(()));
            now += want;
        }
        // another client and another account of the same client are free
        assert_eq!(t.check("d", "a", at(now)), Ok(()));
        // a success clears the pair
        t.success("c", "a");
        t.failure("c", "a", at(now));
        assert_eq!(t.check("c", "a", at(now)), Ok(()));
    }

    #[test]
    fn nobody_can_lock_out_a_client_that_is_not_failing() {
        let t = LoginThrottle::new(policy());
        let now = Instant::now();
        // many attackers exhaust the account-wide limit
        for i in 0..20 {
            t.failure(&format!("attacker-{i}"), "admin", now);
        }
        assert!(t.check("attacker-0", "admin", now).is_err());
        assert!(t.check("attacker-19", "admin", now).is_err());
        // the admin's own client has not been failing: it may try
        assert_eq!(t.check("admin-laptop", "admin", now), Ok(()));
        // the account-wide limit is short
        assert_eq!(
            t.check("attacker-0", "admin", now + Duration::from_secs(61)),
            Ok(())
        );
    }

    #[test]
    fn one_client_cannot_stuff_credentials_across_accounts() {
        let t = LoginThrottle::new(policy());
        let now = Instant::now();
        for i in 0..6 {
            assert_eq!(t.check("c", &format!("user{i}"), now), Ok(()));
            t.failure("c", &format!("user{i}"), now);
        }
        assert_eq!(t.check("c", "fresh", now), Err(600));
        assert_eq!(t.check("other", "fresh", now), Ok(()));
        assert_eq!(
            t.check("c", "fresh", now + Duration::from_secs(600)),
            Ok(())
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
        let now = 1_800_000_000;
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
