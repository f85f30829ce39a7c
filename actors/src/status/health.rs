//! Whether the agent makes progress, and if not why: the reasons `/health`
//! answers 503 with. Pure: the status actor passes its state and the clock.

use std::collections::BTreeMap;

use cdx::failure::FailureClass;
use serde::{Deserialize, Serialize};

use crate::supervisor::ActorHealth;

/// A stage that keeps failing: the download pipeline's `poll`, `download`
/// and `apply`, or `upload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// What failed: headquarters, the message database, the channel
    /// database, the working folder, or the package itself.
    pub component: String,
    pub error: String,
    pub class: FailureClass,
    /// When the stage first failed since it last succeeded.
    pub since_ms: i64,
    /// `since_ms` in RFC 3339, filled in when the status document is made.
    #[serde(default)]
    pub since: String,
    pub failures: u64,
}

/// Everything the assessment looks at.
pub struct HealthInputs<'a> {
    pub now_ms: i64,
    pub started_at_ms: i64,
    pub stall_after_ms: i64,
    pub actors: &'a BTreeMap<String, ActorHealth>,
    pub problems: &'a BTreeMap<String, Problem>,
    /// The package an operator must resume, with why.
    pub suspended: Option<String>,
    /// The last time the download pipeline got anywhere: a poll that
    /// answered, a stage that succeeded.
    pub last_download_progress_ms: Option<i64>,
    /// Whether a download or an apply is in hand right now.
    pub download_busy: bool,
    /// The last upload progress: a batch acknowledged, or a pass that
    /// finished without error.
    pub last_upload_ok_ms: Option<i64>,
}

/// `/health`'s verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub healthy: bool,
    /// Why not, one sentence each; empty when healthy.
    pub reasons: Vec<String>,
}

pub fn assess(i: &HealthInputs<'_>) -> Health {
    let mut reasons = Vec::new();
    for (name, actor) in i.actors {
        if !actor.alive {
            reasons.push(format!("actor {name} is not running"));
        }
    }
    if let Some(why) = &i.suspended {
        reasons.push(format!(
            "downloads are suspended until an operator resumes them: {why}"
        ));
    }
    for (stage, p) in i.problems {
        let for_ms = i.now_ms - p.since_ms;
        if for_ms >= i.stall_after_ms {
            reasons.push(format!(
                "{stage} has failed for {} ({} failures, {}): {}",
                seconds(for_ms),
                p.failures,
                p.component,
                p.error
            ));
        }
    }
    let stalled = |last: Option<i64>, busy: bool| {
        !busy && i.now_ms - last.unwrap_or(i.started_at_ms) >= i.stall_after_ms
    };
    // A failing stage of the pipeline speaks for itself (with its error)
    // once it has lasted; silence is a reason only without one.
    let pipeline_failing = ["poll", "download", "apply"]
        .iter()
        .any(|stage| i.problems.contains_key(*stage));
    if i.suspended.is_none()
        && !pipeline_failing
        && stalled(i.last_download_progress_ms, i.download_busy)
    {
        reasons.push(match i.last_download_progress_ms {
            Some(at) => format!(
                "no successful poll of headquarters for {}",
                seconds(i.now_ms - at)
            ),
            None => format!(
                "no successful poll of headquarters since the agent started {} ago",
                seconds(i.now_ms - i.started_at_ms)
            ),
        });
    }
    if stalled(i.last_upload_ok_ms, false) && !i.problems.contains_key("upload") {
        reasons.push(format!(
            "no upload has succeeded for {}",
            seconds(i.now_ms - i.last_upload_ok_ms.unwrap_or(i.started_at_ms))
        ));
    }
    Health {
        healthy: reasons.is_empty(),
        reasons,
    }
}

fn seconds(ms: i64) -> String {
    format!("{}s", ms.max(0) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn inputs<'a>(
        actors: &'a BTreeMap<String, ActorHealth>,
        problems: &'a BTreeMap<String, Problem>,
    ) -> HealthInputs<'a> {
        HealthInputs {
            now_ms: 100 * MIN,
            started_at_ms: 0,
            stall_after_ms: 5 * MIN,
            actors,
            problems,
            suspended: None,
            last_download_progress_ms: Some(99 * MIN),
            download_busy: false,
            last_upload_ok_ms: Some(99 * MIN),
        }
    }

    fn problem(since_ms: i64) -> Problem {
        Problem {
            component: "message database".into(),
            error: "No space left on device".into(),
            class: FailureClass::Transient,
            since_ms,
            since: String::new(),
            failures: 7,
        }
    }

    /// Recent progress everywhere and no problem: healthy, no reasons.
    #[test]
    fn progress_everywhere_is_healthy() {
        let (actors, problems) = (BTreeMap::new(), BTreeMap::new());
        assert_eq!(
            assess(&inputs(&actors, &problems)),
            Health {
                healthy: true,
                reasons: vec![]
            }
        );
    }

    /// A failing stage of the pipeline is the reason, not the silence it
    /// causes: no "no successful poll" beside it, even before it counts.
    #[test]
    fn a_failing_stage_is_the_reason_not_the_silence() {
        let actors = BTreeMap::new();
        let mut problems = BTreeMap::new();
        problems.insert("download".to_string(), problem(99 * MIN));
        let mut i = inputs(&actors, &problems);
        i.last_download_progress_ms = Some(90 * MIN);
        assert!(assess(&i).healthy, "{:?}", assess(&i).reasons);
        problems.insert("download".to_string(), problem(90 * MIN));
        let mut i = inputs(&actors, &problems);
        i.last_download_progress_ms = Some(90 * MIN);
        let reasons = assess(&i).reasons;
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("download has failed"), "{reasons:?}");
    }

    /// A problem counts only once it lasted `stall_after`; its reason names
    /// the stage, the component and the error.
    #[test]
    fn a_problem_is_a_reason_once_it_lasted_stall_after() {
        let actors = BTreeMap::new();
        let mut problems = BTreeMap::new();
        problems.insert("upload".to_string(), problem(99 * MIN));
        assert!(assess(&inputs(&actors, &problems)).healthy);
        problems.insert("upload".to_string(), problem(94 * MIN));
        let health = assess(&inputs(&actors, &problems));
        assert!(!health.healthy);
        assert_eq!(
            health.reasons,
            ["upload has failed for 360s (7 failures, message database): No space left on device"]
        );
    }

    /// A suspended package and a dead actor are reasons at once.
    #[test]
    fn suspension_and_dead_actors_are_reasons_at_once() {
        let mut actors = BTreeMap::new();
        actors.insert(
            "journal".to_string(),
            ActorHealth {
                alive: false,
                restarts: 1,
                panics: 1,
            },
        );
        let problems = BTreeMap::new();
        let mut i = inputs(&actors, &problems);
        i.suspended = Some("package 42: checksum mismatch".into());
        let health = assess(&i);
        assert_eq!(health.reasons.len(), 2, "{:?}", health.reasons);
        assert!(health.reasons[0].contains("journal"));
        assert!(health.reasons[1].contains("checksum mismatch"));
    }

    /// No poll and no upload for `stall_after` is a reason; a download or
    /// apply in hand excuses the silence of polls.
    #[test]
    fn silence_is_a_reason_unless_a_download_is_in_hand() {
        let (actors, problems) = (BTreeMap::new(), BTreeMap::new());
        let mut i = inputs(&actors, &problems);
        i.last_download_progress_ms = None;
        i.last_upload_ok_ms = Some(90 * MIN);
        let health = assess(&i);
        assert_eq!(health.reasons.len(), 2, "{:?}", health.reasons);
        assert!(health.reasons[0].contains("since the agent started 6000s ago"));
        assert!(health.reasons[1].contains("no upload has succeeded for 600s"));
        i.download_busy = true;
        i.last_upload_ok_ms = Some(99 * MIN);
        assert!(assess(&i).healthy);
    }
}
