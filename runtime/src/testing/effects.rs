//! Effects compared in tests: given a record, when a pure handler runs,
//! then these are its effects, with a readable diff when they are not.

use super::diff;
use crate::effects::Effects;

/// Asserts that a handler's effects are the expected ones; on a mismatch,
/// panics with a line diff of both (`-` expected, `+` actual).
///
/// ```
/// use statefold::effects::{Effects, Message};
/// use statefold::testing::assert_effects;
///
/// fn welcome(name: &str) -> Effects {
///     Effects::new().message(Message::new("welcome", name, &format!("hello {name}")))
/// }
///
/// // Given a customer, when welcomed, then one message.
/// assert_effects(&welcome("ada"), &Effects::new().message(Message::new("welcome", "ada", &"hello ada")));
/// ```
///
/// ```should_panic
/// # use statefold::effects::{Effects, Message};
/// # use statefold::testing::assert_effects;
/// assert_effects(&Effects::new(), &Effects::new().message(Message::new("welcome", "ada", &"hi")));
/// ```
#[track_caller]
pub fn assert_effects(actual: &Effects, expected: &Effects) {
    if actual != expected {
        panic!("the effects differ from the expected ones (- expected, + actual):\n{}", diff(expected, actual));
    }
}

/// [`assert_effects`] as a macro: `assert_effects!(handler(record), expected)`.
///
/// ```
/// use statefold::assert_effects;
/// use statefold::effects::Effects;
/// assert_effects!(Effects::new(), Effects::new());
/// ```
#[macro_export]
macro_rules! assert_effects {
    ($actual:expr, $expected:expr $(,)?) => {
        $crate::testing::assert_effects(&$actual, &$expected)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Message;

    #[test]
    fn the_diff_marks_what_differs() {
        let expected = Effects::new().message(Message::new("t", "k", &1));
        let actual = Effects::new().message(Message::new("t", "k", &2));
        let diff = diff(&expected, &actual);
        assert!(diff.contains("- ") && diff.contains("+ "), "{diff}");
        assert!(diff.lines().any(|l| l.starts_with("- ") && l.contains('1')), "{diff}");
        assert!(diff.lines().any(|l| l.starts_with("+ ") && l.contains('2')), "{diff}");
        assert!(diff.lines().any(|l| l.starts_with("  ") && l.contains("\"t\"")), "{diff}");
    }
}
