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

/// Checks an enum's table against serde, both ways: each value is written
/// as its word, each word read as its value, `as_str`, `Display`,
/// `parse`; `cases` lists every value; a capitalised word is refused.
#[cfg(test)]
pub(crate) fn check_words<T>(cases: &[(T, &str)], words: &[&str], parse: fn(&str) -> Option<T>)
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + PartialEq<str>
        + std::fmt::Debug
        + std::fmt::Display
        + Copy,
{
    let listed: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
    assert_eq!(listed, words);
    for &(value, word) in cases {
        assert_eq!(serde_json::to_value(value).expect("ser"), word);
        let read: T = serde_json::from_value(word.into()).expect("de");
        assert_eq!(read, value);
        assert_eq!(
            (value.to_string(), parse(word)),
            (word.to_owned(), Some(value))
        );
        assert!(value == *word);
        let shouted = word.to_uppercase();
        assert!(serde_json::from_value::<T>(shouted.as_str().into()).is_err());
        assert_eq!(parse(&shouted), None);
    }
}
