//! The query of the list routes: `limit` (bounds and default) and
//! `before`.

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

/// Defines a list route's query type: `limit` within `$min..=$max`
/// (`$default` when absent; `LIMIT`, `checked_limit`) and `before`, the
/// last item of the previous page. The doc comments are passed whole:
/// they are the OpenAPI parameter descriptions.
macro_rules! page_query {
    (
        $(#[$doc:meta])*
        pub struct $name:ident {
            #[doc = $limit_doc:literal]
            limit: $min:tt ..= $max:tt, default $default:tt,
            #[doc = $before_doc:literal]
            before: $before:ty,
        }
    ) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize,
        )]
        #[cfg_attr(
            feature = "openapi",
            derive(utoipa::IntoParams),
            into_params(parameter_in = Query)
        )]
        #[non_exhaustive]
        pub struct $name {
            #[doc = $limit_doc]
            #[cfg_attr(feature = "openapi", param(minimum = $min, maximum = $max))]
            pub limit: Option<u32>,
            #[doc = $before_doc]
            pub before: Option<$before>,
        }

        impl $name {
            /// The bounds and default of `limit`.
            pub const LIMIT: $crate::PageLimit = $crate::PageLimit::new($min, $max, $default);

            /// At most `limit` items (`None`: the default), older than
            /// `before` (the last of the previous page).
            pub fn new(limit: Option<u32>, before: Option<$before>) -> Self {
                $name { limit, before }
            }

            /// The limit to use (`LIMIT`); 400 `invalid_query` when out of
            /// bounds.
            pub fn checked_limit(&self) -> Result<u32, $crate::Invalid> {
                Self::LIMIT.resolve(self.limit)
            }
        }
    };
}

pub(crate) use page_query;
