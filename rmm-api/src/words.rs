//! The methods every wire enum has: its words, parsing, display, and
//! comparison with a word.

/// Implements `WORDS`, `as_str`, `parse`, `Display` and `PartialEq<str>`
/// for a unit enum from its variant -> word table (the serde words, which
/// the tests check against this table).
macro_rules! wire_words {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// Every wire word, in declaration order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The wire word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }

            /// The value of a wire word, or `None`.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, word: &str) -> bool {
                self.as_str() == word
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, word: &&str) -> bool {
                self.as_str() == *word
            }
        }
    };
}

pub(crate) use wire_words;
