//! One pass of the download pipeline: list, then download and apply each
//! package in order, recording every step in the journal.

use std::time::{Duration, Instant};

use actix::Addr;
use cdx::channel_db::{ApplyOutcome, ChannelDbError};
use cdx::config::DownloadConfig;
use cdx::head::HeadWatch;
use cdx::protocol::{GroupHead, PackageInfo};
use cdx::retry::{RetryDecision, RetryPolicy, Tries};
use cdx::status::DownloadStatus;
use uuid::Uuid;

use crate::applier::{Applier, Apply, LastApplied, PassOver};
use crate::downloader::{Downloader, Fetch};
use crate::error::ActorError;
use crate::hq::HqClient;
use crate::journal::{DownloadSession, Journal, OpenDownloads, SaveDownload};
use crate::shutdown::Shutdown;
use crate::status::{Status, StatusEvent};
use crate::transfer::Downloaded;

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassOutcome {
    /// Packages were applied; there may be more.
    Progressed,
    /// Nothing new (a long poll ended empty).
    Idle,
    /// The server or the channel database could not be reached.
    Failed,
    /// A package used up its tries; an operator must resume it.
    Suspended,
    Stopped,
}

/// Everything a pass needs; cheap to clone into the pass's future.
#[derive(Clone)]
pub struct Pipeline {
    pub hq: HqClient,
    pub journal: Addr<Journal>,
    pub downloader: Addr<Downloader>,
    pub applier: Addr<Applier>,
    pub status: Addr<Status>,
    pub config: DownloadConfig,
    pub retry: RetryPolicy,
    pub shutdown: Shutdown,
    /// Where packages are downloaded to: `<working folder>/downloads`.
    pub downloads_dir: std::path::PathBuf,
    /// The last "went back" headquarters told of (the sequence it saw the
    /// store at), so that it is logged once, not at every poll.
    pub went_back: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The last quiet listing, which a poll may end at while the group's
    /// head stays (with `download.head_url`).
    pub head: std::sync::Arc<std::sync::Mutex<HeadWatch>>,
}

/// What became of one package.
pub(super) enum Carried {
    Applied,
    Suspended,
    Stopped,
}

impl Pipeline {
    /// Whether an empty answer came after a long poll (so the next poll
    /// may start at once); with `download.head_url` polls run every
    /// interval instead.
    pub fn long_polls(&self) -> bool {
        !self.config.long_poll.is_zero() && self.config.head_url.is_none()
    }

    /// One pass; `list`: whatever the group's head says (an operator asked).
    pub async fn pass(&self, resume: bool, list: bool) -> PassOutcome {
        match self.try_pass(resume, list).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(error = %e, "poll failed; retrying at the next interval");
                // The next pass lists: a head that did not move says
                // nothing of what failed, and must not seem to recover it.
                self.head_watch().forget();
                self.status.do_send(StatusEvent::Failing {
                    stage: "poll",
                    component: e.component(),
                    error: e.to_string(),
                    class: e.class(),
                });
                PassOutcome::Failed
            }
        }
    }

    async fn try_pass(&self, resume: bool, list: bool) -> Result<PassOutcome, ActorError> {
        let open = self.journal.send(OpenDownloads).await??;
        // With nothing in hand, a group head unmoved since the last quiet
        // listing ends the poll here.
        let mut head = None;
        if let (Some(url), false, true) = (&self.config.head_url, list, open.is_empty()) {
            let quiet = self.head_watch().quiet(Instant::now()).cloned();
            if let Some(quiet) = quiet {
                match self
                    .ask_head(url, &quiet.data_group, Some(&quiet.version))
                    .await
                {
                    Some(None) => {
                        self.status.do_send(StatusEvent::Polled {
                            data_group: quiet.data_group,
                            listed: 0,
                            last_applied: quiet.last_applied,
                            pending: Vec::new(),
                        });
                        return Ok(PassOutcome::Idle);
                    }
                    Some(moved) => head = moved,
                    None => {}
                }
            }
        }
        let mut gate = open
            .iter()
            .find(|s| s.status == DownloadStatus::Suspended)
            .cloned();
        if resume {
            // Released before headquarters is asked: an operator's resume
            // holds even when this pass then fails to reach it.
            if let Some(gate) = gate.take() {
                self.release(gate, "resumed by an operator", false).await?;
            }
        }
        let ping = self.hq.ping().await?;
        if let Some(url) = &self.config.head_url {
            // Read before the listing: a listing that finds nothing vouches
            // for this version.
            if head
                .as_ref()
                .is_none_or(|h| h.data_group != ping.data_group)
            {
                head = self.ask_head(url, &ping.data_group, None).await.flatten();
            }
        }
        let last_applied = self.last_applied(&ping.data_group).await?;
        // A gate at or below what the channel database holds (a rerun of
        // an applied package that failed, an interrupted one) holds nothing
        // back; `settle_applied` closes it.
        let gate = gate.filter(|g| g.package.sequence > last_applied);
        let wait = if open.is_empty() && self.long_polls() {
            self.config.long_poll
        } else {
            Duration::ZERO
        };
        // Waiting for news is not work in hand: shutdown cuts it short.
        let list = tokio::select! {
            list = self.hq.packages(last_applied, wait) => list?,
            () = self.shutdown.triggered() => return Ok(PassOutcome::Stopped),
        };
        if let Some(before) = list.applied_before.filter(|b| *b > last_applied) {
            self.report_went_back(last_applied, before);
        }
        self.status.do_send(StatusEvent::Polled {
            data_group: list.data_group.clone(),
            listed: list.packages.len(),
            last_applied,
            // What the store will apply: passed-over packages are no lag.
            pending: list
                .packages
                .iter()
                .filter(|p| p.pass_over_reason().is_none())
                .map(|p| (p.package.sequence, p.package.created_at_ms))
                .collect(),
        });
        if let Some(gate) = gate {
            // A suspended package waits for an operator, unless headquarters
            // withdrew or superseded it: then it is passed over below.
            let passed_over = list
                .packages
                .iter()
                .any(|l| l.package.id == gate.package.id && l.pass_over_reason().is_some());
            if !passed_over {
                self.report_suspended(&gate);
                return Ok(PassOutcome::Suspended);
            }
        }
        if list.packages.is_empty() {
            if let Some(head) = head {
                self.head_watch().listed_quiet(
                    &head.data_group,
                    &head.version,
                    last_applied,
                    Instant::now(),
                );
            }
            return Ok(PassOutcome::Idle);
        }
        let open = self.settle_applied(last_applied).await?;
        for (expected, listed) in (last_applied + 1..).zip(&list.packages) {
            let info = &listed.package;
            if info.sequence != expected {
                return Err(ActorError::SequenceGap {
                    expected,
                    listed: info.sequence,
                });
            }
            if let Some(reason) = listed.pass_over_reason() {
                self.pass_over(info, &open, reason).await?;
                continue;
            }
            let session = match open.iter().find(|s| s.package.id == info.id) {
                Some(s) => s.clone(),
                None => self.new_session(info).await?,
            };
            match self.carry(session, false).await? {
                Carried::Applied => {}
                Carried::Suspended => return Ok(PassOutcome::Suspended),
                Carried::Stopped => return Ok(PassOutcome::Stopped),
            }
        }
        Ok(PassOutcome::Progressed)
    }

    /// Asks the group's head (`known`: the version of the last quiet
    /// listing), tells the status actor how it went, and logs a failure:
    /// `None` when it could not be read (the poll then lists), `Some(None)`
    /// when it still says `known`.
    async fn ask_head(
        &self,
        url: &str,
        data_group: &str,
        known: Option<&str>,
    ) -> Option<Option<GroupHead>> {
        let asked = self.hq.head(url, data_group, known).await;
        self.status.do_send(StatusEvent::HeadAsked {
            error: asked.as_ref().err().map(ToString::to_string),
            ended_poll: matches!(asked, Ok(None)),
        });
        asked
            .map_err(|e| tracing::warn!(error = %e, "could not read the group's head; listing"))
            .ok()
    }

    fn head_watch(&self) -> std::sync::MutexGuard<'_, HeadWatch> {
        self.head.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Says, once per episode, that the channel database went back: it
    /// holds packages up to `here`, where headquarters saw it apply up to
    /// `before`. Nothing else is needed: the packages after `here` are
    /// listed and applied again, passing over superseded ones.
    fn report_went_back(&self, here: u64, before: u64) {
        let message = format!(
            "the channel database holds packages up to #{here}, and headquarters saw this \
             store apply up to #{before}: it went back (restored from a backup, or a full \
             sync). The packages after #{here} are applied again"
        );
        if self
            .went_back
            .swap(before, std::sync::atomic::Ordering::Relaxed)
            != before
        {
            tracing::warn!(here, headquarters = before, "{message}");
        }
        self.status.do_send(StatusEvent::WentBack {
            what: crate::status::PACKAGES.into(),
            here: i64::try_from(here).unwrap_or(i64::MAX),
            headquarters: i64::try_from(before).unwrap_or(i64::MAX),
            message,
        });
    }

    /// The highest sequence the channel database holds for `data_group`.
    pub(super) async fn last_applied(&self, data_group: &str) -> Result<u64, ActorError> {
        self.applier
            .send(LastApplied {
                data_group: data_group.to_owned(),
            })
            .await?
    }

    /// Lets a held session go on: a suspended package resumed, or a failed
    /// one rerun (then its downloaded file is dropped, so that it is
    /// downloaded again).
    pub(super) async fn release(
        &self,
        mut session: DownloadSession,
        why: &str,
        download_again: bool,
    ) -> Result<(), ActorError> {
        let was_suspended = session.status == DownloadStatus::Suspended;
        if download_again {
            self.remove_files(session.package.id).await;
        }
        session.transition(DownloadStatus::Requested, Some(why.into()));
        self.save(&session, true).await?;
        if was_suspended {
            self.status.do_send(StatusEvent::Suspended {
                package_id: None,
                reason: None,
            });
        }
        Ok(())
    }

    /// Passes over a package headquarters withdrew or superseded: its
    /// session (a suspended one included) is Canceled with the reason, and
    /// the channel database records it in its place in the order, so that
    /// the packages after it follow.
    pub(super) async fn pass_over(
        &self,
        info: &PackageInfo,
        open: &[DownloadSession],
        reason: String,
    ) -> Result<(), ActorError> {
        let mut session = match open.iter().find(|s| s.package.id == info.id) {
            Some(s) => s.clone(),
            None => DownloadSession::new(info.clone(), DownloadStatus::Available, None),
        };
        let was_suspended = session.status == DownloadStatus::Suspended;
        // The journal first: a crash before the channel database records it
        // only passes over the package again at the next poll.
        session.transition(DownloadStatus::Canceled, Some(reason.clone()));
        self.save(&session, true).await?;
        self.applier
            .send(PassOver {
                package: info.clone(),
                reason,
            })
            .await??;
        self.remove_files(info.id).await;
        if was_suspended {
            self.status.do_send(StatusEvent::Suspended {
                package_id: None,
                reason: None,
            });
        }
        self.status.do_send(StatusEvent::Applied {
            sequence: info.sequence,
        });
        Ok(())
    }

    /// Why headquarters' listing now says to pass over `package`; `None`
    /// when it does not, or cannot be asked.
    async fn pass_over_reason(&self, package: &PackageInfo) -> Option<String> {
        let after = package.sequence.saturating_sub(1);
        let list = self.hq.packages(after, Duration::ZERO).await.ok()?;
        list.packages
            .iter()
            .find(|l| l.package.id == package.id)?
            .pass_over_reason()
    }

    /// Drops a package's downloaded and partial files.
    async fn remove_files(&self, id: Uuid) {
        let path = crate::transfer::package_path(&self.downloads_dir, id);
        let _ = tokio::fs::remove_file(&path).await;
        let _ = tokio::fs::remove_file(crate::transfer::part_path(&self.downloads_dir, id)).await;
    }

    /// Closes sessions whose package the channel database already holds
    /// (the agent stopped between the commit and the journal's record), and
    /// returns the sessions still open.
    async fn settle_applied(&self, last_applied: u64) -> Result<Vec<DownloadSession>, ActorError> {
        let mut open = self.journal.send(OpenDownloads).await??;
        for s in open
            .iter_mut()
            .filter(|s| s.package.sequence <= last_applied)
        {
            s.transition(
                DownloadStatus::Applied,
                Some("recovered: the channel database had applied it".into()),
            );
            self.save(s, false).await?;
            let path = crate::transfer::package_path(&self.downloads_dir, s.package.id);
            let _ = tokio::fs::remove_file(path).await;
        }
        open.retain(|s| s.package.sequence > last_applied);
        Ok(open)
    }

    async fn new_session(&self, info: &PackageInfo) -> Result<DownloadSession, ActorError> {
        let s = DownloadSession::new(info.clone(), DownloadStatus::Available, None);
        // Durable at once: a restart must find this session, not open another.
        self.save(&s, true).await?;
        Ok(s)
    }

    /// Downloads and applies one package, retrying each stage per policy:
    /// transient failures for as long as they last, permanent ones until
    /// the try count is spent.
    ///
    /// `reapply`: the channel database holds the package already (a full
    /// package rerun by an operator): apply it over itself.
    pub(super) async fn carry(
        &self,
        mut session: DownloadSession,
        reapply: bool,
    ) -> Result<Carried, ActorError> {
        let mut tries = Tries::default();
        // Set while a file found damaged is downloaded again and applied.
        let mut damaged = false;
        loop {
            if self.shutdown.is_triggered() {
                return Ok(Carried::Stopped);
            }
            let (stage, step) = match session.status {
                DownloadStatus::Downloaded | DownloadStatus::ApplyFailed => {
                    ("apply", self.apply(&mut session, reapply).await)
                }
                DownloadStatus::Applied => return Ok(Carried::Applied),
                _ => ("download", self.download(&mut session).await),
            };
            let e = match step {
                Ok(()) => {
                    // Each stage has its own tries; but the download of a
                    // damaged file does not start its apply's over, so a
                    // disk that damages every copy still spends them.
                    if !damaged || stage == "apply" {
                        tries.reset();
                        damaged = false;
                    }
                    self.status.do_send(StatusEvent::Recovered { stage });
                    continue;
                }
                Err(ActorError::ShuttingDown) => return Ok(Carried::Stopped),
                Err(e) => e,
            };
            damaged |= stage == "apply" && session.status == DownloadStatus::Requested;
            let class = e.class();
            self.status.do_send(StatusEvent::Failing {
                stage,
                component: e.component(),
                error: e.to_string(),
                class,
            });
            // Headquarters may have withdrawn or superseded it meanwhile
            // (a package too large for the disk, say): then no more tries.
            if !reapply {
                if let Some(reason) = self.pass_over_reason(&session.package).await {
                    let open = [session.clone()];
                    self.pass_over(&session.package, &open, reason).await?;
                    return Ok(Carried::Applied);
                }
            }
            match tries.failed(&self.retry, class, rand::random()) {
                RetryDecision::RetryAfter(delay) => {
                    tracing::warn!(package = %session.package.id, error = %e, ?class,
                        permanent_failures = tries.permanent,
                        retry_in_ms = delay.as_millis() as u64, "{stage} failed; will retry");
                    if !self.shutdown.sleep(delay).await {
                        return Ok(Carried::Stopped);
                    }
                }
                RetryDecision::GiveUp if reapply => {
                    // The channel database keeps the package as applied
                    // before: nothing waits behind a failed rerun.
                    tracing::error!(package = %session.package.id, error = %e,
                        "the rerun of an applied package failed its last try");
                    session.transition(
                        DownloadStatus::Canceled,
                        Some(format!("rerun failed, tried too many times: {e}")),
                    );
                    self.save(&session, true).await?;
                    return Ok(Carried::Suspended);
                }
                RetryDecision::GiveUp => {
                    self.give_up(session, &e).await?;
                    return Ok(Carried::Suspended);
                }
            }
        }
    }

    async fn download(&self, session: &mut DownloadSession) -> Result<(), ActorError> {
        session.transition(DownloadStatus::Requested, None);
        self.save(session, false).await?;
        self.activity(Some(format!("downloading package {}", session.package.id)));
        let result = self
            .downloader
            .send(Fetch {
                package: session.package.clone(),
            })
            .await
            .map_err(ActorError::from)
            .and_then(|r| r);
        self.activity(None);
        match result {
            Ok(Downloaded { bytes, .. }) => {
                session.bytes_done = bytes;
                session.transition(DownloadStatus::Downloaded, None);
                self.save(session, true).await?;
                Ok(())
            }
            Err(ActorError::Transfer(crate::transfer::TransferError::Interrupted { .. })) => {
                Err(ActorError::ShuttingDown)
            }
            Err(e) => {
                session.transition(DownloadStatus::DownloadFailed, Some(e.to_string()));
                self.save(session, false).await?;
                Err(e)
            }
        }
    }

    async fn apply(&self, session: &mut DownloadSession, reapply: bool) -> Result<(), ActorError> {
        let path = crate::transfer::package_path(&self.downloads_dir, session.package.id);
        if !tokio::fs::try_exists(&path).await.unwrap_or(true) {
            // Removed by hand, or lost with the disk: download it again.
            session.transition(
                DownloadStatus::Requested,
                Some("the downloaded file is gone; downloading it again".into()),
            );
            self.save(session, false).await?;
            return Ok(());
        }
        self.activity(Some(format!("applying package {}", session.package.id)));
        let result = self
            .applier
            .send(Apply {
                package: session.package.clone(),
                path: path.clone(),
                reapply,
            })
            .await
            .map_err(ActorError::from)
            .and_then(|r| r);
        self.activity(None);
        match result {
            Ok(outcome) => {
                let message = match &outcome {
                    ApplyOutcome::Applied(r) => {
                        session.rows_applied = r.upserts + r.deletes;
                        None
                    }
                    ApplyOutcome::AlreadyApplied => {
                        Some("the channel database already had this package".to_string())
                    }
                };
                session.transition(DownloadStatus::Applied, message);
                self.save(session, true).await?;
                self.status.do_send(StatusEvent::Applied {
                    sequence: session.package.sequence,
                });
                let _ = tokio::fs::remove_file(&path).await;
                Ok(())
            }
            Err(e @ ActorError::ChannelDb(ChannelDbError::Package { .. }))
                if !crate::transfer::matches_listing(&path, &session.package).await =>
            {
                // The file is not what was downloaded, checked and synced:
                // the disk lost bytes of it (failing, or a cache that lies
                // about syncs). Headquarters still has it.
                tracing::warn!(package = %session.package.id, error = %e,
                    "the downloaded file no longer matches its listing; downloading it again");
                let _ = tokio::fs::remove_file(&path).await;
                session.transition(DownloadStatus::ApplyFailed, Some(e.to_string()));
                session.transition(
                    DownloadStatus::Requested,
                    Some(
                        "the downloaded file no longer matches its listed SHA-256; \
                          downloading it again"
                            .into(),
                    ),
                );
                self.save(session, false).await?;
                Err(e)
            }
            Err(e) => {
                session.transition(DownloadStatus::ApplyFailed, Some(e.to_string()));
                self.save(session, false).await?;
                Err(e)
            }
        }
    }

    /// The try count is spent: the session is Canceled with its last error,
    /// and a new session for the same package waits Suspended for an operator.
    async fn give_up(
        &self,
        mut session: DownloadSession,
        e: &ActorError,
    ) -> Result<(), ActorError> {
        tracing::error!(package = %session.package.id, error = %e,
            "package failed its last try; later packages wait until an operator resumes it");
        session.transition(
            DownloadStatus::Canceled,
            Some(format!("tried too many times: {e}")),
        );
        self.save(&session, true).await?;
        let gate = DownloadSession::new(
            session.package.clone(),
            DownloadStatus::Suspended,
            Some(format!("previous session {} was canceled: {e}", session.id)),
        );
        self.save(&gate, true).await?;
        self.report_suspended(&gate);
        Ok(())
    }

    /// The package a suspended session holds, if any.
    pub async fn suspended_package(&self) -> Option<Uuid> {
        let open = self.journal.send(OpenDownloads).await.ok()?.ok()?;
        open.iter()
            .find(|s| s.status == DownloadStatus::Suspended)
            .map(|s| s.package.id)
    }

    fn report_suspended(&self, gate: &DownloadSession) {
        self.status.do_send(StatusEvent::Suspended {
            package_id: Some(gate.package.id),
            reason: gate.history.last().and_then(|t| t.message.clone()),
        });
    }

    pub(super) async fn save(
        &self,
        session: &DownloadSession,
        flush: bool,
    ) -> Result<(), ActorError> {
        self.journal
            .send(SaveDownload {
                session: session.clone(),
                flush,
            })
            .await?
    }

    fn activity(&self, doing: Option<String>) {
        self.status.do_send(StatusEvent::Activity {
            actor: "poller",
            doing,
        });
    }
}
