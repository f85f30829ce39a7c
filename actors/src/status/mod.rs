//! The status actor: gathers what the other actors tell it and answers
//! `GET /status` with one JSON document. It holds no secret, so none can
//! leak through it.

mod health;
mod http;
pub mod metrics;
pub mod page;
pub mod screen;

use std::collections::BTreeMap;

use actix::prelude::*;
use cdx::failure::FailureClass;
use cdx::protocol::{now_ms, rfc3339_ms};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use health::{assess, Health, HealthInputs, Problem};
pub use http::{serve, ControlAccess, SessionsDocument};

use crate::journal::{DownloadSession, Journal, Recent, UploadSession};
use crate::supervisor::{ActorHealth, Supervision};

const NAME: &str = "status";
const RECENT_SESSIONS: usize = 20;

/// What the other actors report as it happens.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum StatusEvent {
    Polled {
        data_group: String,
        listed: usize,
        last_applied: u64,
        /// The packages listed, as (sequence, created at in ms).
        pending: Vec<(u64, i64)>,
    },
    /// The group's head was asked: `error` when it could not be read;
    /// `ended_poll` when it showed nothing new and the poll ended there.
    HeadAsked {
        error: Option<String>,
        ended_poll: bool,
    },
    /// A package committed to the channel database.
    Applied { sequence: u64 },
    /// Rows of a package read and applied so far, of the declared total
    /// (sent every few seconds of a long apply).
    ApplyProgress {
        package_id: Uuid,
        rows: u64,
        total: u64,
    },
    /// An apply ended, done or not.
    ApplyEnded,
    /// Rows of an upload table above its watermark, counted at the start of
    /// an upload pass; acknowledged batches count down from it.
    Waiting { table: String, rows: u64 },
    /// A stage (`poll`, `download`, `apply`, `upload`) failed; it keeps
    /// failing until a `Recovered` of the same stage.
    Failing {
        stage: &'static str,
        component: &'static str,
        error: String,
        class: FailureClass,
    },
    /// A stage succeeded (an upload pass: finished without error).
    Recovered { stage: &'static str },
    DownloadProgress {
        package_id: Uuid,
        bytes: u64,
        total: u64,
    },
    /// A download ended, done or not: its progress is no longer shown.
    DownloadEnded,
    Activity {
        actor: &'static str,
        doing: Option<String>,
    },
    /// An upload table's watermark; `server_high_water` when the server
    /// just told it (otherwise the last one told is kept).
    Watermark {
        table: String,
        counter: i64,
        server_high_water: Option<i64>,
        /// Rows headquarters just acknowledged (0 when none were sent).
        acknowledged_rows: u64,
    },
    Suspended {
        package_id: Option<Uuid>,
        reason: Option<String>,
    },
    /// The channel database went back (restored from a backup, or a full
    /// sync): `what` (`packages`, or an upload table) is at `here`, where
    /// headquarters saw it at `headquarters`. Shown until it is back there.
    WentBack {
        what: String,
        here: i64,
        headquarters: i64,
        message: String,
    },
}

/// The channel database went back in something headquarters had seen
/// further along; the store catches up by itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WentBack {
    /// Where the channel database is (a sequence, or an upload counter).
    pub here: i64,
    /// How far headquarters saw it before.
    pub headquarters: i64,
    pub since_ms: i64,
    #[serde(default)]
    pub since: String,
    pub message: String,
    /// When it was back where headquarters saw it; kept for the rest of
    /// the run, so that an operator sees it happened.
    #[serde(default)]
    pub caught_up_at_ms: Option<i64>,
    #[serde(default)]
    pub caught_up_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PollState {
    pub at_ms: Option<i64>,
    /// `at_ms` in RFC 3339, filled in when the document is made.
    #[serde(default)]
    pub at: Option<String>,
    pub ok: Option<bool>,
    pub error: Option<String>,
    pub listed: usize,
    pub data_group: Option<String>,
    pub last_applied_sequence: u64,
    /// With `download.head_url`: how asking the group's head went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadState>,
}

/// The group's head, asked before polls (`download.head_url`). A head that
/// cannot be read costs no sync (the poll lists at headquarters), so it is
/// shown here and logged, and `/health` stays as the sync is.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HeadState {
    pub at_ms: i64,
    pub ok: bool,
    /// Why the last try failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Polls that ended at the head (nothing new) since the agent started.
    pub polls_ended: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatermarkState {
    pub counter: i64,
    pub server_high_water: Option<i64>,
    pub at_ms: i64,
    /// `at_ms` in RFC 3339, filled in when the document is made.
    #[serde(default)]
    pub at: String,
    /// Rows above the watermark, as of the last upload pass.
    #[serde(default)]
    pub waiting: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub package_id: Uuid,
    pub bytes: u64,
    pub total: u64,
}

/// An apply under way: rows read and applied of the package's declared rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyProgress {
    pub package_id: Uuid,
    pub rows: u64,
    pub total: u64,
}

/// How far the store is behind headquarters, as of the last poll and the
/// packages applied since.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Behind {
    /// Packages listed and not applied yet.
    pub packages: usize,
    /// When the oldest of them was published.
    pub oldest_created_at_ms: Option<i64>,
    pub oldest_created_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuspendedState {
    pub package_id: Option<Uuid>,
    pub reason: Option<String>,
}

/// The document `GET /status` answers with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusDocument {
    pub channel_id: String,
    pub server_url: String,
    pub transfer_mode: String,
    pub started_at_ms: i64,
    /// `started_at_ms` in RFC 3339; every `*_at_ms` time in the document
    /// has its RFC 3339 twin beside it (`*_at`, `since`).
    #[serde(default)]
    pub started_at: String,
    pub uptime_ms: i64,
    pub healthy: bool,
    /// Why the agent is not healthy (what `/health` answers 503 with).
    pub health_reasons: Vec<String>,
    /// Stages failing now, by stage, with since when.
    pub problems: BTreeMap<String, Problem>,
    pub actors: BTreeMap<String, ActorHealth>,
    pub last_poll: PollState,
    /// The last poll that succeeded, even when later ones failed.
    #[serde(default)]
    pub last_successful_poll_ms: Option<i64>,
    #[serde(default)]
    pub last_successful_poll: Option<String>,
    #[serde(default)]
    pub behind: Behind,
    pub activity: BTreeMap<String, String>,
    pub download_progress: Option<Progress>,
    #[serde(default)]
    pub apply_progress: Option<ApplyProgress>,
    pub suspended: Option<SuspendedState>,
    pub watermarks: BTreeMap<String, WatermarkState>,
    /// What went back, by `packages` or `upload <table>`: the store
    /// re-applies or re-sends by itself; an operator may want to know.
    #[serde(default)]
    pub went_back: BTreeMap<String, WentBack>,
    pub recent_downloads: Vec<DownloadSession>,
    pub recent_uploads: Vec<UploadSession>,
}

/// The parts of the document that do not change while the agent runs.
#[derive(Debug, Clone)]
pub struct Identity {
    pub channel_id: String,
    pub server_url: String,
    pub transfer_mode: String,
    /// How long a stage may fail, or go without progress, before the
    /// agent calls itself unhealthy.
    pub stall_after: std::time::Duration,
}

pub struct Status {
    identity: Identity,
    started_at_ms: i64,
    journal: Addr<Journal>,
    supervision: Supervision,
    poll: PollState,
    last_successful_poll_ms: Option<i64>,
    /// Listed and not applied: (sequence, created at in ms), in order.
    pending: Vec<(u64, i64)>,
    activity: BTreeMap<&'static str, String>,
    progress: Option<Progress>,
    apply_progress: Option<ApplyProgress>,
    suspended: Option<SuspendedState>,
    watermarks: BTreeMap<String, WatermarkState>,
    went_back: BTreeMap<String, WentBack>,
    problems: BTreeMap<String, Problem>,
    last_download_progress_ms: Option<i64>,
    last_upload_ok_ms: Option<i64>,
}

impl Status {
    pub fn start(
        identity: Identity,
        journal: Addr<Journal>,
        supervision: &Supervision,
    ) -> Addr<Self> {
        let supervision = supervision.clone();
        let started_at_ms = now_ms();
        Supervisor::start(move |_| Status {
            identity,
            started_at_ms,
            journal,
            supervision: supervision.clone(),
            poll: PollState::default(),
            last_successful_poll_ms: None,
            pending: Vec::new(),
            activity: BTreeMap::new(),
            progress: None,
            apply_progress: None,
            suspended: None,
            watermarks: BTreeMap::new(),
            went_back: BTreeMap::new(),
            problems: BTreeMap::new(),
            last_download_progress_ms: None,
            last_upload_ok_ms: None,
        })
    }

    fn actors(&self) -> BTreeMap<String, ActorHealth> {
        self.supervision
            .snapshot()
            .into_iter()
            .map(|(name, health)| (name.to_string(), health))
            .collect()
    }

    fn health(&self, actors: &BTreeMap<String, ActorHealth>) -> Health {
        assess(&HealthInputs {
            now_ms: now_ms(),
            started_at_ms: self.started_at_ms,
            stall_after_ms: self.identity.stall_after.as_millis() as i64,
            actors,
            problems: &self.problems,
            suspended: self.suspended.as_ref().map(|s| {
                let package = s.package_id.map(|p| p.to_string()).unwrap_or_default();
                format!("package {package}: {}", s.reason.as_deref().unwrap_or(""))
            }),
            last_download_progress_ms: self.last_download_progress_ms,
            download_busy: self.activity.contains_key("poller"),
            // Every acknowledged batch counts as progress, so a long drain
            // is not a stall.
            last_upload_ok_ms: self.last_upload_ok_ms,
        })
    }
}

impl Actor for Status {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Supervised for Status {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.supervision.restarted(NAME);
    }
}

impl Status {
    /// `stage` succeeded: it no longer fails, and the agent made progress.
    fn recovered(&mut self, stage: &str) {
        self.problems.remove(stage);
        let now = Some(now_ms());
        if stage == "upload" {
            self.last_upload_ok_ms = now;
        } else {
            self.last_download_progress_ms = now;
        }
    }
}

impl Status {
    /// `what` is at `at`: a went-back episode it reached the end of is over.
    fn caught_up(&mut self, what: &str, at: i64) {
        if let Some(w) = self.went_back.get_mut(what) {
            if w.caught_up_at_ms.is_none() && at >= w.headquarters {
                w.caught_up_at_ms = Some(now_ms());
                tracing::info!(
                    what,
                    at,
                    "caught up with where the channel database was before it went back"
                );
            }
        }
    }
}

impl Handler<StatusEvent> for Status {
    type Result = ();
    fn handle(&mut self, event: StatusEvent, _: &mut Self::Context) {
        match event {
            StatusEvent::Polled {
                data_group,
                listed,
                last_applied,
                pending,
            } => {
                self.last_successful_poll_ms = Some(now_ms());
                self.pending = pending;
                self.poll = PollState {
                    at_ms: Some(now_ms()),
                    at: None,
                    ok: Some(true),
                    error: None,
                    listed,
                    data_group: Some(data_group),
                    last_applied_sequence: last_applied,
                    head: self.poll.head.take(),
                };
                self.recovered("poll");
            }
            StatusEvent::HeadAsked { error, ended_poll } => {
                let head = self.poll.head.get_or_insert_with(HeadState::default);
                head.at_ms = now_ms();
                head.ok = error.is_none();
                head.error = error.map(|e| cdx::protocol::printable(&e));
                head.polls_ended += u64::from(ended_poll);
            }
            StatusEvent::Failing {
                stage,
                component,
                error,
                class,
            } => {
                let error = cdx::protocol::printable(&error);
                if stage == "apply" {
                    // Also after a panic, which sends no ApplyEnded.
                    self.apply_progress = None;
                }
                if stage == "poll" {
                    self.poll.at_ms = Some(now_ms());
                    self.poll.ok = Some(false);
                    self.poll.error = Some(error.clone());
                }
                let now = now_ms();
                let p = self.problems.entry(stage.to_string()).or_insert(Problem {
                    component: String::new(),
                    error: String::new(),
                    class,
                    since_ms: now,
                    since: String::new(),
                    failures: 0,
                });
                p.component = component.to_string();
                p.error = error;
                p.class = class;
                p.failures += 1;
            }
            StatusEvent::Recovered { stage } => self.recovered(stage),
            StatusEvent::Applied { sequence } => {
                let at = i64::try_from(sequence).unwrap_or(i64::MAX);
                self.caught_up(PACKAGES, at);
                self.pending.retain(|(s, _)| *s > sequence);
                self.poll.last_applied_sequence = self.poll.last_applied_sequence.max(sequence);
                self.apply_progress = None;
            }
            StatusEvent::ApplyProgress {
                package_id,
                rows,
                total,
            } => {
                // Rows going into the database are progress, even before
                // the commit.
                self.last_download_progress_ms = Some(now_ms());
                self.apply_progress = Some(ApplyProgress {
                    package_id,
                    rows,
                    total,
                });
            }
            StatusEvent::ApplyEnded => self.apply_progress = None,
            StatusEvent::Waiting { table, rows } => {
                let w = self.watermarks.entry(table).or_insert(WatermarkState {
                    at_ms: now_ms(),
                    ..Default::default()
                });
                w.waiting = Some(rows);
            }
            StatusEvent::DownloadProgress {
                package_id,
                bytes,
                total,
            } => {
                self.last_download_progress_ms = Some(now_ms());
                self.progress = (bytes < total).then_some(Progress {
                    package_id,
                    bytes,
                    total,
                });
            }
            StatusEvent::DownloadEnded => self.progress = None,
            StatusEvent::Activity { actor, doing } => match doing {
                Some(d) => {
                    self.activity.insert(actor, d);
                }
                None => {
                    self.activity.remove(actor);
                }
            },
            StatusEvent::Watermark {
                table,
                counter,
                server_high_water,
                acknowledged_rows,
            } => {
                self.caught_up(&upload_key(&table), counter);
                let known = self.watermarks.get(&table);
                let server_high_water =
                    server_high_water.or(known.and_then(|w| w.server_high_water));
                let waiting = known
                    .and_then(|w| w.waiting)
                    .map(|w| w.saturating_sub(acknowledged_rows));
                self.watermarks.insert(
                    table,
                    WatermarkState {
                        counter,
                        server_high_water,
                        at_ms: now_ms(),
                        waiting,
                        ..Default::default()
                    },
                );
            }
            StatusEvent::WentBack {
                what,
                here,
                headquarters,
                message,
            } => {
                // The same episode keeps its start; a new one starts now.
                let since_ms = self
                    .went_back
                    .get(&what)
                    .filter(|w| w.caught_up_at_ms.is_none())
                    .map_or_else(now_ms, |w| w.since_ms);
                self.went_back.insert(
                    what,
                    WentBack {
                        here,
                        headquarters,
                        since_ms,
                        since: String::new(),
                        message,
                        caught_up_at_ms: None,
                        caught_up_at: None,
                    },
                );
            }
            StatusEvent::Suspended { package_id, reason } => {
                self.apply_progress = None;
                self.suspended = reason.map(|reason| SuspendedState {
                    package_id,
                    reason: Some(reason),
                });
            }
        }
    }
}

/// The `went_back` key of the packages.
pub const PACKAGES: &str = "packages";

/// The `went_back` key of upload table `table`.
pub fn upload_key(table: &str) -> String {
    format!("upload {table}")
}

/// Asks for the status document.
#[derive(Message)]
#[rtype(result = "StatusDocument")]
pub struct GetStatus;

impl Handler<GetStatus> for Status {
    type Result = ResponseActFuture<Self, StatusDocument>;
    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let recent = self.journal.send(Recent {
            limit: RECENT_SESSIONS,
        });
        Box::pin(recent.into_actor(self).map(|recent, act, _| {
            let (recent_downloads, recent_uploads) = match recent {
                Ok(Ok(r)) => r,
                _ => Default::default(),
            };
            let actors = act.actors();
            let health = act.health(&actors);
            let mut last_poll = act.poll.clone();
            last_poll.at = last_poll.at_ms.map(rfc3339_ms);
            let mut problems = act.problems.clone();
            for p in problems.values_mut() {
                p.since = rfc3339_ms(p.since_ms);
            }
            let oldest = act.pending.iter().map(|(_, at)| *at).min();
            let behind = Behind {
                packages: act.pending.len(),
                oldest_created_at_ms: oldest,
                oldest_created_at: oldest.map(rfc3339_ms),
            };
            let mut watermarks = act.watermarks.clone();
            for w in watermarks.values_mut() {
                w.at = rfc3339_ms(w.at_ms);
            }
            let mut went_back = act.went_back.clone();
            for w in went_back.values_mut() {
                w.since = rfc3339_ms(w.since_ms);
                w.caught_up_at = w.caught_up_at_ms.map(rfc3339_ms);
            }
            StatusDocument {
                channel_id: act.identity.channel_id.clone(),
                server_url: act.identity.server_url.clone(),
                transfer_mode: act.identity.transfer_mode.clone(),
                started_at_ms: act.started_at_ms,
                started_at: rfc3339_ms(act.started_at_ms),
                uptime_ms: now_ms() - act.started_at_ms,
                healthy: health.healthy,
                health_reasons: health.reasons,
                problems,
                actors,
                last_poll,
                last_successful_poll_ms: act.last_successful_poll_ms,
                last_successful_poll: act.last_successful_poll_ms.map(rfc3339_ms),
                behind,
                activity: act
                    .activity
                    .iter()
                    .map(|(actor, doing)| (actor.to_string(), doing.clone()))
                    .collect(),
                download_progress: act.progress.clone(),
                apply_progress: act.apply_progress.clone(),
                suspended: act.suspended.clone(),
                watermarks,
                went_back,
                recent_downloads,
                recent_uploads,
            }
        }))
    }
}

/// Asks whether the agent makes progress (`/health`).
#[derive(Message)]
#[rtype(result = "Health")]
pub struct GetHealth;

impl Handler<GetHealth> for Status {
    type Result = MessageResult<GetHealth>;
    fn handle(&mut self, _: GetHealth, _: &mut Self::Context) -> Self::Result {
        let actors = self.actors();
        MessageResult(self.health(&actors))
    }
}
