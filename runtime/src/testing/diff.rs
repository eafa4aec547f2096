//! The diff every assertion of this module prints on a mismatch.

use std::fmt::Debug;

/// A line diff of the pretty `Debug` (`{:#?}`) of both values (longest
/// common subsequence): `-` lines are only in `expected`, `+` lines only in
/// `actual`, the others in both.
///
/// ```
/// let diff = statefold::testing::diff(&vec![1, 2], &vec![1, 3]);
/// assert_eq!(diff, "  [\n      1,\n-     2,\n+     3,\n  ]\n");
/// ```
pub fn diff<T: Debug + ?Sized>(expected: &T, actual: &T) -> String {
    let (old, new) = (format!("{expected:#?}"), format!("{actual:#?}"));
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}
