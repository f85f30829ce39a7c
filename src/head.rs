//! Whether a poll may end at its data group's head, pure: the agent keeps
//! a [`HeadWatch`] and asks it before each poll.
//!
//! `GET /v1/groups/{group}/head` (`docs/protocol.md`) is the same answer
//! for every store of a group, so a CDN or caching proxy can answer a whole
//! fleet with one request a second to headquarters. A store that listed
//! its packages at a head's version and found nothing to do has nothing to
//! ask while the version stays: the poll ends there, without credentials,
//! a ping or a listing. It lists again when the version moves, when it has
//! work in hand (an open session, an operator's resume or sync), and at
//! least every [`HEAD_TRUSTED_FOR`], so that headquarters still sees it
//! and what the head cannot show (a channel database restored from a
//! backup, a store moved to another group) is noticed.

use std::time::{Duration, Instant};

/// The longest a quiet listing stands in for the next ones.
pub const HEAD_TRUSTED_FOR: Duration = Duration::from_secs(300);

/// A listing that found nothing to do, asked after the head said `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quiet {
    pub data_group: String,
    pub version: String,
    /// What the channel database held then.
    pub last_applied: u64,
    pub at: Instant,
}

/// The last quiet listing, if one may still end a poll.
#[derive(Debug, Default)]
pub struct HeadWatch {
    quiet: Option<Quiet>,
}

impl HeadWatch {
    /// The quiet listing a poll at `now` may end at when the head still
    /// says its version: `None` when there is none, or it is older than
    /// [`HEAD_TRUSTED_FOR`] (then the poll lists).
    pub fn quiet(&self, now: Instant) -> Option<&Quiet> {
        self.quiet
            .as_ref()
            .filter(|q| now.saturating_duration_since(q.at) < HEAD_TRUSTED_FOR)
    }

    /// A listing asked after the head said `version` found nothing to do.
    pub fn listed_quiet(
        &mut self,
        data_group: &str,
        version: &str,
        last_applied: u64,
        now: Instant,
    ) {
        self.quiet = Some(Quiet {
            data_group: data_group.to_owned(),
            version: version.to_owned(),
            last_applied,
            at: now,
        });
    }

    /// Forgets the quiet listing: the next poll lists.
    pub fn forget(&mut self) {
        self.quiet = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_listing_stands_for_a_while_then_the_poll_lists_again() {
        let start = Instant::now();
        let mut watch = HeadWatch::default();
        assert!(watch.quiet(start).is_none(), "nothing listed yet");

        watch.listed_quiet("default", "7-9", 7, start);
        let quiet = watch.quiet(start + Duration::from_secs(1)).unwrap();
        assert_eq!(
            (
                quiet.data_group.as_str(),
                quiet.version.as_str(),
                quiet.last_applied
            ),
            ("default", "7-9", 7)
        );
        assert!(watch
            .quiet(start + HEAD_TRUSTED_FOR - Duration::from_millis(1))
            .is_some());
        assert!(
            watch.quiet(start + HEAD_TRUSTED_FOR).is_none(),
            "trusted past {HEAD_TRUSTED_FOR:?}"
        );
        // A clock read before the listing (another thread's) trusts it too.
        assert!(watch.quiet(start - Duration::from_secs(1)).is_some());

        watch.listed_quiet("default", "8-10", 8, start + HEAD_TRUSTED_FOR);
        assert_eq!(
            watch.quiet(start + HEAD_TRUSTED_FOR).unwrap().version,
            "8-10"
        );
        watch.forget();
        assert!(watch.quiet(start + HEAD_TRUSTED_FOR).is_none());
    }
}
