//! Exponential backoff between attempts.

use std::time::Duration;

/// Exponential backoff between attempts at an event.
///
/// ```
/// use statefold::Backoff;
/// use std::time::Duration;
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(backoff.delay(1), Duration::from_millis(100));
/// assert_eq!(backoff.delay(3), Duration::from_millis(400));
/// assert_eq!(backoff.delay(30), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 30 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Waits `initial` after the first failure, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, factor: 2.0 }
    }

    /// Multiplies the wait by `factor` (at least 1) after each failure.
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor.max(1.0);
        self
    }

    /// The wait after the `failures`th failure in a row (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let scaled = self.initial.as_secs_f64() * self.factor.powi(exponent);
        if scaled.is_finite() && scaled < self.max.as_secs_f64() {
            Duration::from_secs_f64(scaled)
        } else {
            self.max
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50)).factor(3.0);
        let delays: Vec<_> = (1..=4).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [10, 30, 50, 50]);
    }
}
