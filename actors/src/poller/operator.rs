//! An operator's rerun and cancel of one package (`cdx-client rerun ID`,
//! `cdx-client cancel ID`), as the original's Download sessions form has
//! them, with one rule the original lacked: packages apply in order, so a
//! package is given up on only when headquarters withdrew it or a later
//! full package of its job supersedes it. And a full sync (`cdx-client
//! full-sync`): the store applies headquarters' snapshot plan again.
//!
//! Each runs when no pass is in hand (the poller queues it), so it never
//! races the pipeline over a session.

use cdx::channel_db::AppliedPackage;
use cdx::package::PackageKind;
use cdx::status::DownloadStatus;
use uuid::Uuid;

use super::pipeline::{Carried, Pipeline};
use crate::applier::{AppliedPackages, ForgetApplied};
use crate::error::ActorError;
use crate::journal::{DownloadSession, OpenDownloads, PackageSessions};

/// What an operator asks of one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Rerun(Uuid),
    Cancel(Uuid),
    FullSync,
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The message database has no session of the package.
    #[error("{0}")]
    Unknown(String),
    /// Carrying it out would break an invariant; the text says which and
    /// the way out.
    #[error("{0}")]
    Refused(String),
    /// Headquarters or the channel database failed meanwhile.
    #[error(transparent)]
    Failed(#[from] ActorError),
    /// The agent could not get to it (stopping, restarting): try again.
    #[error("{0}")]
    Unavailable(String),
}

impl Pipeline {
    /// Carries out `request`, answering with what was done.
    pub async fn operate(&self, request: Request) -> Result<String, OperatorError> {
        match request {
            Request::Rerun(id) => self.rerun(id).await,
            Request::Cancel(id) => self.cancel(id).await,
            Request::FullSync => self.full_sync().await,
        }
    }

    /// Re-seeds the store: the channel database forgets its position in
    /// its group's order, so that the next passes apply headquarters'
    /// snapshot plan from the start: the latest full package of each job
    /// and the packages after it, passing over the superseded and withdrawn
    /// ones. Refused while a package is suspended (the plan would stop at
    /// it again).
    async fn full_sync(&self) -> Result<String, OperatorError> {
        let open = self
            .journal
            .send(OpenDownloads)
            .await
            .map_err(ActorError::from)??;
        if let Some(held) = open.iter().find(|s| s.status == DownloadStatus::Suspended) {
            return Err(OperatorError::Refused(format!(
                "{} is suspended, and a full sync would stop at it again: rerun or resume it \
                 once it is fixed, or have headquarters withdraw or supersede it, then sync",
                describe(held)
            )));
        }
        let ping = self.hq.ping().await.map_err(ActorError::from)?;
        let group = ping.data_group;
        let was = self.last_applied(&group).await?;
        let forgotten = self
            .applier
            .send(ForgetApplied {
                data_group: group.clone(),
            })
            .await
            .map_err(ActorError::from)??;
        Ok(format!(
            "the channel database forgot its {forgotten} packages of data group `{group}` (it \
             was at #{was}); the store now applies headquarters' snapshot plan from the start: \
             the latest full package of each job and the packages after it, passing over the \
             superseded and withdrawn ones. `cdx-client status` shows it catch up"
        ))
    }

    /// Downloads and applies a package again: a failed, suspended or
    /// waiting one at once; a full package applied already over itself,
    /// when no later package of its tables was applied after it.
    async fn rerun(&self, id: Uuid) -> Result<String, OperatorError> {
        let sessions = self.sessions_of(id).await?;
        let newest = &sessions[0];
        let p = &newest.package;
        let what = describe(newest);
        if let Some(open) = sessions.iter().find(|s| !s.status.is_final()) {
            self.release(
                open.clone(),
                "rerun by an operator: downloading and applying it again",
                true,
            )
            .await?;
            return Ok(format!(
                "{what} was {:?}: it is downloaded and applied again now",
                open.status
            ));
        }
        let applied = self
            .applier
            .send(AppliedPackages {
                data_group: p.data_group.clone(),
            })
            .await
            .map_err(ActorError::from)??;
        let record = applied.iter().find(|a| a.package_id == id);
        if let Some(reason) = record.and_then(|r| r.passed_over.as_deref()) {
            return Err(OperatorError::Refused(format!(
                "{what} was passed over ({reason}); applying it now would apply it out of order"
            )));
        }
        match (newest.status, p.kind, record) {
            (DownloadStatus::Applied, PackageKind::Full, Some(record)) => {
                if let Some(later) = later_overlapping(&applied, record) {
                    return Err(OperatorError::Refused(format!(
                        "{what} cannot be applied again: package {} (#{}, job {}) was applied \
                         after it and changes the same tables, which applying it again would \
                         roll back; rerun the latest full package of the job, or ask \
                         headquarters for a new one",
                        later.package_id, later.sequence, later.job
                    )));
                }
                let session = DownloadSession::new(
                    p.clone(),
                    DownloadStatus::Requested,
                    Some("rerun by an operator: applying the full package again".into()),
                );
                self.save(&session, true).await?;
                tracing::warn!(package = %id, sequence = p.sequence, job = %p.job,
                    "an operator reruns a full package applied already");
                match self.carry(session, true).await? {
                    Carried::Applied => Ok(format!("{what} was applied again")),
                    Carried::Suspended => Err(OperatorError::Refused(format!(
                        "applying {what} again failed its last try; the channel database \
                         keeps it as applied before (`cdx-client sessions show {id}` has the \
                         error)"
                    ))),
                    Carried::Stopped => Err(OperatorError::Unavailable(
                        "the agent is stopping; the rerun did not finish".into(),
                    )),
                }
            }
            (DownloadStatus::Applied, _, _) => Err(OperatorError::Refused(format!(
                "{what} is an incremental package applied already: its changes are in the \
                 channel database. Rerun takes a failed, suspended or waiting package, or a \
                 full package"
            ))),
            (status, _, _) => Err(OperatorError::Refused(format!(
                "{what} is {status:?}, and not in the channel database; it cannot be rerun"
            ))),
        }
    }

    /// Gives up on a failed, suspended or waiting package, when
    /// headquarters withdrew it or a later full package supersedes it;
    /// refuses otherwise, saying why and the way out.
    async fn cancel(&self, id: Uuid) -> Result<String, OperatorError> {
        let sessions = self.sessions_of(id).await?;
        let what = describe(&sessions[0]);
        let Some(open) = sessions.iter().find(|s| !s.status.is_final()) else {
            return Err(OperatorError::Refused(format!(
                "{what} is {:?} already: only a failed, suspended or waiting package can be \
                 canceled",
                sessions[0].status
            )));
        };
        let p = &open.package;
        let last_applied = self.last_applied(&p.data_group).await?;
        let list = self
            .hq
            .packages(last_applied, std::time::Duration::ZERO)
            .await
            .map_err(ActorError::from)?;
        let Some(listed) = list.packages.iter().find(|l| l.package.id == id) else {
            return Err(OperatorError::Refused(format!(
                "headquarters does not list {what} after sequence {last_applied}; \
                 run `cdx-client sync-now` and look again"
            )));
        };
        let Some(reason) = listed.pass_over_reason() else {
            return Err(OperatorError::Refused(format!(
                "{what} is neither withdrawn nor superseded at headquarters, and the packages \
                 after it may apply only after it. Ask headquarters to withdraw it \
                 (`cdx-server package withdraw {id} --reason TEXT`) or to publish a full \
                 package of job {}: either releases this store by itself at its next poll",
                p.job
            )));
        };
        if p.sequence != last_applied + 1 {
            return Err(OperatorError::Refused(format!(
                "{what} is not the next package: the channel database's last is #{last_applied}; \
                 the packages before it go first"
            )));
        }
        let open_sessions = [open.clone()];
        self.pass_over(p, &open_sessions, reason.clone()).await?;
        Ok(format!(
            "{what} is canceled ({reason}); the packages after it follow"
        ))
    }

    /// Every session of package `id`, newest first; at least one.
    async fn sessions_of(&self, id: Uuid) -> Result<Vec<DownloadSession>, OperatorError> {
        let sessions = self
            .journal
            .send(PackageSessions { package_id: id })
            .await
            .map_err(ActorError::from)??;
        if sessions.is_empty() {
            return Err(OperatorError::Unknown(format!(
                "the message database has no session of package {id}; \
                 `cdx-client sessions --downloads` lists them"
            )));
        }
        Ok(sessions)
    }
}

/// "package ID (#SEQ, job J, full)".
fn describe(session: &DownloadSession) -> String {
    let p = &session.package;
    let kind = match p.kind {
        PackageKind::Full => "full",
        PackageKind::Incremental => "incremental",
    };
    format!("package {} (#{}, job {}, {kind})", p.id, p.sequence, p.job)
}

/// A package applied after `record` that a re-apply of `record` would roll
/// back: a later one of the same job (the channel database does not record
/// tables, so a job stands for its tables), not passed over.
fn later_overlapping<'a>(
    applied: &'a [AppliedPackage],
    record: &AppliedPackage,
) -> Option<&'a AppliedPackage> {
    applied
        .iter()
        .filter(|a| a.sequence > record.sequence && a.passed_over.is_none())
        .find(|a| a.job == record.job)
}
