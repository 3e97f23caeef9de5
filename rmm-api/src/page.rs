//! The `limit` of the list routes.

use crate::Invalid;

/// The bounds and default of a list route's `limit` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageLimit {
    /// Smallest `limit`.
    pub min: u32,
    /// Largest `limit`.
    pub max: u32,
    /// The `limit` when none is given.
    pub default: u32,
}

impl PageLimit {
    pub(crate) const fn new(min: u32, max: u32, default: u32) -> Self {
        PageLimit { min, max, default }
    }

    /// The limit to use: `limit`, or the default; 400 `invalid_query`
    /// when out of bounds.
    pub fn resolve(self, limit: Option<u32>) -> Result<u32, Invalid> {
        let limit = limit.unwrap_or(self.default);
        if !(self.min..=self.max).contains(&limit) {
            return Err(Invalid::new(
                Invalid::BAD_REQUEST,
                "invalid_query",
                format!("limit must be between {} and {}", self.min, self.max),
            ));
        }
        Ok(limit)
    }
}
