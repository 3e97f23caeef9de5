//! Users and logging in: roles, the user as the API shows it, creating and
//! changing one, and the e-mail and password rules.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::words::wire_words;
use crate::{Invalid, chars, wire};

/// Longest e-mail, in characters as sent (surrounding whitespace included).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Shortest password of a user, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// A user's role. Roles are ordered: `admin` may do everything a
/// `technician` may, who may do everything `readonly` may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Reads only.
    Readonly,
    /// Agents, commands, tunnels.
    Technician,
    /// Everything, including users and enrollment.
    Admin,
}

wire_words!(Role { Readonly => "readonly", Technician => "technician", Admin => "admin" });

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::parse(s)
            .ok_or_else(|| format!("unknown role {s:?}, expected admin, technician or readonly"))
    }
}

/// A new user's e-mail as stored (trimmed, lowercase), if it is
/// `name@domain` without whitespace or control characters, within
/// [`MAX_EMAIL_CHARS`] as sent ([`crate::pattern::user_email`]); else 422
/// `invalid_email`.
pub fn user_email(raw: &str) -> Result<String, Invalid> {
    let invalid = || Invalid::unprocessable("invalid_email", "email must look like name@domain");
    if chars(raw) > MAX_EMAIL_CHARS {
        return Err(invalid());
    }
    let email = raw.trim().to_lowercase();
    let ok = email
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(email) } else { Err(invalid()) }
}

/// A user's new password: [`MIN_PASSWORD_CHARS`] to
/// [`MAX_PASSWORD_CHARS`] characters, else 422 `weak_password`.
pub fn check_password(password: &str) -> Result<(), Invalid> {
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars(password)) {
        return Err(Invalid::unprocessable(
            "weak_password",
            format!(
                "the password must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
            ),
        ));
    }
    Ok(())
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = User))]
#[non_exhaustive]
pub struct UserView {
    /// Id.
    pub id: Uuid,
    /// E-mail.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Created.
    #[serde(serialize_with = "wire::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "wire::millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub updated_at: DateTime<Utc>,
    /// A disabled user cannot log in and has no sessions.
    pub disabled: bool,
}

impl UserView {
    /// A user.
    pub fn new(
        id: Uuid,
        email: impl Into<String>,
        role: Role,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        disabled: bool,
    ) -> Self {
        UserView {
            id,
            email: email.into(),
            role,
            created_at,
            updated_at,
            disabled,
        }
    }
}

/// `POST /api/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct LoginRequest {
    /// E-mail (case-insensitive, surrounding whitespace ignored; no
    /// control characters inside).
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::login_email))]
    pub email: String,
    /// Password.
    #[cfg_attr(feature = "openapi", schema(max_length = 1024))]
    pub password: String,
}

/// The rules ([`LoginRequest::login_name`]): e-mail and password within
/// [`MAX_EMAIL_CHARS`] / [`MAX_PASSWORD_CHARS`], no control characters in
/// the e-mail (422 `invalid_credentials_format`).
impl LoginRequest {
    /// Logging in as `email` with `password`.
    pub fn new(email: impl Into<String>, password: impl Into<String>) -> Self {
        LoginRequest {
            email: email.into(),
            password: password.into(),
        }
    }

    /// The login name (the e-mail trimmed and lowercase), if the request
    /// keeps the rules; else 422 `invalid_credentials_format`.
    pub fn login_name(&self) -> Result<String, Invalid> {
        if chars(&self.email) > MAX_EMAIL_CHARS || chars(&self.password) > MAX_PASSWORD_CHARS {
            return Err(Invalid::unprocessable(
                "invalid_credentials_format",
                "email or password too long",
            ));
        }
        let email = self.email.trim().to_lowercase();
        if email.chars().any(char::is_control) {
            return Err(Invalid::unprocessable(
                "invalid_credentials_format",
                "the email contains control characters",
            ));
        }
        Ok(email)
    }
}

/// A JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct TokenResponse {
    /// HS256 JWT, valid 24 h.
    pub token: String,
}

impl TokenResponse {
    /// The answer carrying `token`.
    pub fn new(token: impl Into<String>) -> Self {
        TokenResponse {
            token: token.into(),
        }
    }
}

/// `POST /api/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct UserCreate {
    /// E-mail (login name): `name@domain`, stored lowercase, surrounding
    /// whitespace ignored.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::user_email))]
    pub email: String,
    /// Password.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: String,
    /// Role.
    pub role: Role,
}

/// The rules ([`UserCreate::validate`]): [`user_email`],
/// [`check_password`].
impl UserCreate {
    /// A new user.
    pub fn new(email: impl Into<String>, password: impl Into<String>, role: Role) -> Self {
        UserCreate {
            email: email.into(),
            password: password.into(),
            role,
        }
    }

    /// The e-mail as stored, if the request keeps the rules: 422
    /// `invalid_email`, then `weak_password`.
    pub fn validate(&self) -> Result<String, Invalid> {
        let email = user_email(&self.email)?;
        check_password(&self.password)?;
        Ok(email)
    }
}

/// `PATCH /api/users/:id`: at least one of the fields, not null (the
/// description says so with one `anyOf` branch per field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct UserUpdate {
    /// New role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// New password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: Option<String>,
    /// Disable (`true`: no login, sessions end) or enable the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// The rules ([`UserUpdate::validate`]): something to change (422
/// `nothing_to_change`), [`check_password`].
impl UserUpdate {
    /// A change of nothing yet; set the fields to change.
    pub fn new() -> Self {
        UserUpdate::default()
    }

    /// Changes the role.
    #[must_use]
    pub fn role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Changes the password.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Disables (`true`) or enables the user.
    #[must_use]
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = Some(disabled);
        self
    }

    /// Checks the rules: 422 `nothing_to_change` when no field is set,
    /// then [`check_password`].
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.role.is_none() && self.password.is_none() && self.disabled.is_none() {
            return Err(Invalid::unprocessable(
                "nothing_to_change",
                "give role, password and/or disabled",
            ));
        }
        if let Some(password) = &self.password {
            check_password(password)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, Invalid>) -> Result<T, &'static str> {
        r.map_err(|e| {
            assert_eq!(e.status, 422, "{e:?}");
            e.code
        })
    }

    #[test]
    fn roles() {
        let cases = [
            (Role::Readonly, "readonly"),
            (Role::Technician, "technician"),
            (Role::Admin, "admin"),
        ];
        crate::words::check_words(&cases, Role::WORDS, Role::parse);
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!(Role::Readonly < Role::Technician && Role::Technician < Role::Admin);
        assert_eq!(
            "root".parse::<Role>(),
            Err(r#"unknown role "root", expected admin, technician or readonly"#.to_owned())
        );
    }

    #[test]
    fn user_emails() {
        for (raw, stored) in [
            ("a@b", "a@b"),
            ("  Admin@Example.COM \n", "admin@example.com"),
            ("ä@ö.de", "ä@ö.de"),
        ] {
            assert_eq!(user_email(raw), Ok(stored.to_owned()), "{raw:?}");
        }
        let long = format!("{}@b", "é".repeat(MAX_EMAIL_CHARS - 2));
        assert_eq!(chars(&long), MAX_EMAIL_CHARS);
        assert!(user_email(&long).is_ok());
        for bad in [
            "",
            "ab",
            "@b",
            "a@",
            "a b@c",
            "a@b\u{7}",
            "a@\u{85}b",
            &format!("{long}x"),
        ] {
            assert_eq!(code(user_email(bad)), Err("invalid_email"), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        for ok in [8, 9, MAX_PASSWORD_CHARS] {
            assert_eq!(code(check_password(&"é".repeat(ok))), Ok(()), "{ok}");
        }
        for bad in [0, 7, MAX_PASSWORD_CHARS + 1] {
            let e = check_password(&"x".repeat(bad)).unwrap_err();
            assert_eq!(
                (e.code, e.message.as_str()),
                (
                    "weak_password",
                    "the password must have 8 to 1024 characters"
                )
            );
        }
    }

    #[test]
    fn login_rules() {
        let req = LoginRequest::new("  Admin@Example.com ", "pw");
        assert_eq!(req.login_name(), Ok("admin@example.com".to_owned()));
        let long_email = "a".repeat(MAX_EMAIL_CHARS + 1);
        let long_pw = "a".repeat(MAX_PASSWORD_CHARS + 1);
        for (email, password, message) in [
            (long_email.as_str(), "pw", "email or password too long"),
            ("a@b", long_pw.as_str(), "email or password too long"),
            ("a\u{0}@b", "pw", "the email contains control characters"),
        ] {
            let e = LoginRequest::new(email, password).login_name().unwrap_err();
            assert_eq!(
                (e.status, e.code, e.message.as_str()),
                (422, "invalid_credentials_format", message)
            );
        }
        // only inside: surrounding control characters that are whitespace
        // are trimmed
        assert!(LoginRequest::new("\na@b\t", "pw").login_name().is_ok());
    }

    #[test]
    fn create_and_update_rules() {
        let ok = UserCreate::new(" New@Example.com", "long enough", Role::Technician);
        assert_eq!(ok.validate(), Ok("new@example.com".to_owned()));
        assert_eq!(
            code(UserCreate::new("nope", "x", Role::Admin).validate()),
            Err("invalid_email")
        );
        assert_eq!(
            code(UserCreate::new("a@b", "short", Role::Admin).validate()),
            Err("weak_password")
        );
        assert_eq!(code(UserUpdate::new().validate()), Err("nothing_to_change"));
        assert_eq!(code(UserUpdate::new().disabled(false).validate()), Ok(()));
        assert_eq!(code(UserUpdate::new().role(Role::Admin).validate()), Ok(()));
        assert_eq!(
            code(UserUpdate::new().password("short").validate()),
            Err("weak_password")
        );
        let json = serde_json::to_value(UserUpdate::new().role(Role::Readonly)).expect("ser");
        assert_eq!(json, serde_json::json!({"role": "readonly"}));
        let read: UserUpdate =
            serde_json::from_value(serde_json::json!({"password": null})).expect("null is absent");
        assert_eq!(read, UserUpdate::new());
    }

    #[test]
    fn user_view_wire_format() {
        let at = DateTime::from_timestamp_millis(0).expect("epoch");
        let u = UserView::new(Uuid::from_u128(3), "a@b", Role::Admin, at, at, false);
        let json = serde_json::to_value(&u).expect("ser");
        assert_eq!(json["created_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["role"], "admin");
        assert_eq!(serde_json::from_value::<UserView>(json).expect("de"), u);
    }
}
