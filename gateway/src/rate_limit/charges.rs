//! All-or-nothing charging of several buckets: each charge is undone unless the whole set commits.
//!
//! Undoing restores the bucket's state from before the charge, which is exact only when nothing else
//! charged that bucket in between: callers hold their limiter's lock from the first charge to commit or drop.

use std::time::Duration;

use super::bucket::{Bucket, Snapshot};

/// Charges taken during one admission, restored on drop unless committed: all or nothing.
#[derive(Default)]
pub(super) struct Charges<'a> {
    taken: Vec<(&'a Bucket, Snapshot)>,
}

impl<'a> Charges<'a> {
    /// [`Bucket::take`], remembered so it can be undone.
    pub(super) fn take(&mut self, bucket: &'a Bucket, n: u32) -> Result<u32, Duration> {
        let before = bucket.snapshot();
        let taken = bucket.take(n)?;
        self.taken.push((bucket, before));
        Ok(taken)
    }

    pub(super) fn commit(mut self) {
        self.taken.clear();
    }
}

impl Drop for Charges<'_> {
    fn drop(&mut self) {
        for (bucket, before) in self.taken.drain(..).rev() {
            bucket.restore(before);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_uncommitted_charge_is_restored() {
        let bucket = Bucket::per_minute(10);
        {
            let mut charges = Charges::default();
            assert_eq!(charges.take(&bucket, 4), Ok(4));
        }
        assert_eq!(bucket.peek().remaining, 10);
        let mut charges = Charges::default();
        assert_eq!(charges.take(&bucket, 4), Ok(4));
        charges.commit();
        assert_eq!(bucket.peek().remaining, 6);
    }
}
