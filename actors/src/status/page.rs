//! The status page at `/` on the status endpoint: the status document for a
//! person, on a phone at the till as on a desk. Server-rendered HTML that
//! reloads itself every few seconds; its only control is the Resume form of
//! a suspended package, which needs the control token. Pure: the document
//! and the time in, markup out.

use cdx::html::{layout, Refresh};
use maud::{html, Markup};

use super::screen::age;
use super::StatusDocument;
use crate::journal::{DownloadSession, Transition, UploadSession};
use cdx::protocol::rfc3339_ms;

/// Seconds between reloads.
pub const REFRESH_SECONDS: u32 = 5;

/// What a form post changed, shown at the top of the page.
#[derive(Debug, Clone)]
pub enum Notice {
    Resumed(String),
    Refused(String),
}

/// The page for `doc` at `now_ms`.
pub fn render(doc: &StatusDocument, now_ms: i64, notice: Option<&Notice>) -> Markup {
    let ago = |ms: i64| age(now_ms.saturating_sub(ms));
    let title = format!(
        "cdx {}{}",
        doc.channel_id,
        if doc.healthy { " OK" } else { " UNHEALTHY" }
    );
    layout(
        &title,
        Some(Refresh {
            seconds: REFRESH_SECONDS,
            url: "/",
        }),
        html! {
            h1 { "Store " (doc.channel_id) }
            p.muted {
                "Headquarters " code { (doc.server_url) } ", " (doc.transfer_mode)
                " transfers; agent up " (crate::status::screen::age(doc.uptime_ms))
                " (since " (doc.started_at) "). Page made " (rfc3339_ms(now_ms)) "."
            }
            @match notice {
                Some(Notice::Resumed(id)) => div.box.ok #notice { "Resumed package " span.id { (id) } "." },
                Some(Notice::Refused(why)) => div.box.bad #notice { "Not resumed: " (why) },
                None => {},
            }
            @if doc.healthy {
                div.box.ok #health { strong { "Healthy" } }
            } @else {
                div.box.bad #health {
                    strong { "UNHEALTHY" }
                    ul { @for r in &doc.health_reasons { li { (r) } } }
                }
            }
            @if let Some(s) = &doc.suspended {
                (suspended(s))
            }
            @for (what, w) in &doc.went_back {
                @if let Some(at) = &w.caught_up_at {
                    div.box.ok.went-back {
                        strong { "Went back (" (what) "), caught up: " } (w.message)
                        " Since " (w.since) ", caught up " (at) "."
                    }
                } @else {
                    div.box.bad.went-back {
                        strong { "Went back (" (what) "): " } (w.message)
                        " Since " (w.since) "."
                    }
                }
            }
            h2 { "Downloads" }
            p #poll {
                @match doc.last_poll.at_ms {
                    Some(at) => {
                        "Last poll " (ago(at)) " ago ("
                        (doc.last_poll.at.clone().unwrap_or_else(|| rfc3339_ms(at))) "): "
                        @match (&doc.last_poll.ok, &doc.last_poll.error) {
                            (Some(false), Some(e)) => { strong { "failed" } ": " (e) }
                            _ => "ok",
                        }
                        ". Applied up to #" strong #applied { (doc.last_poll.last_applied_sequence) }
                        @if let Some(g) = &doc.last_poll.data_group { " of data group " (g) }
                        ". "
                    }
                    None => "No poll yet. ",
                }
                @if let Some(at) = doc.last_successful_poll_ms {
                    @if doc.last_poll.ok == Some(false) {
                        "Last successful poll " (ago(at)) " ago. "
                    }
                }
                "Behind: " strong #behind { (doc.behind.packages) } " package(s)"
                @if let Some(at) = doc.behind.oldest_created_at_ms {
                    ", the oldest published " (ago(at)) " ago"
                }
                "."
            }
            @if let Some(p) = &doc.download_progress {
                p { "Downloading " span.id { (p.package_id) } ": " (p.bytes) " of " (p.total) " bytes"
                    progress max=(p.total) value=(p.bytes) {} }
            }
            @if let Some(p) = &doc.apply_progress {
                p { "Applying " span.id { (p.package_id) } ": " (p.rows) " of " (p.total) " rows"
                    progress max=(p.total) value=(p.rows) {} }
            }
            @for (actor, doing) in &doc.activity { p.muted { (actor) ": " (doing) } }
            @for (stage, p) in &doc.problems {
                div.box.bad {
                    strong { (stage) " failing" } " (" (p.component) ") for " (ago(p.since_ms))
                    ", " (p.failures) " failure(s): " (p.error)
                }
            }
            (downloads(&doc.recent_downloads, now_ms))
            h2 { "Uploads" }
            @if doc.watermarks.is_empty() {
                p.muted { "No upload pass yet." }
            } @else {
                div.scroll { table #watermarks {
                    tr { th { "Table" } th { "Sent up to" } th { "Headquarters holds" } th { "Waiting" } th { "When" } }
                    @for (table, w) in &doc.watermarks {
                        tr {
                            td { (table) }
                            td.n { (w.counter) }
                            td.n { (w.server_high_water.map(|h| h.to_string()).unwrap_or_default()) }
                            td.n { (w.waiting.map(|n| n.to_string()).unwrap_or_default()) }
                            td { (ago(w.at_ms)) " ago" }
                        }
                    }
                } }
            }
            (uploads(&doc.recent_uploads, now_ms))
            h2 { "Actors" }
            div.scroll { table #actors {
                tr { th { "Actor" } th { "State" } th { "Restarts" } th { "Panics" } }
                @for (name, a) in &doc.actors {
                    tr {
                        td { (name) }
                        td { @if a.alive { "running" } @else { strong { "DOWN" } } }
                        td.n { (a.restarts) }
                        td.n { (a.panics) }
                    }
                }
            } }
            p.muted { "JSON: " a href="/status" { "/status" } ", " a href="/sessions" { "/sessions" }
                ", " a href="/metrics" { "/metrics" } ". Reloads every " (REFRESH_SECONDS) " s." }
        },
    )
}

fn suspended(s: &super::SuspendedState) -> Markup {
    let id = s.package_id.map(|p| p.to_string()).unwrap_or_default();
    html! {
        div.box.bad #suspended {
            strong { "Suspended: " } "package " span.id #suspended-package { (id) }
            p { (s.reason.as_deref().unwrap_or("no reason recorded")) }
            p { "The packages after it wait. Fix the cause, then resume; or have \
                 headquarters withdraw it (or publish a full package that supersedes it), and \
                 the store passes over it by itself." }
            form method="post" action="/resume" {
                label for="token" { "Control token " }
                input #token type="password" name="token" autocomplete="current-password"
                    required placeholder="from status.control_token_file";
                " "
                button #resume type="submit" { "Resume" }
            }
        }
    }
}

fn history(h: &[Transition]) -> Markup {
    html! {
        details {
            summary { (h.len()) " change(s)" }
            ol {
                @for t in h {
                    li { (t.status) " " span.muted { (rfc3339_ms(t.at_ms)) }
                        @if let Some(m) = &t.message { ": " (m) } }
                }
            }
        }
    }
}

fn downloads(sessions: &[DownloadSession], now_ms: i64) -> Markup {
    html! {
        @if !sessions.is_empty() {
            div.scroll { table #downloads {
                tr { th { "#" } th { "Job" } th { "Status" } th { "Rows" } th { "Bytes" } th { "Changed" } th { "History" } }
                @for s in sessions {
                    tr {
                        td.n { (s.package.sequence) }
                        td { (s.package.job) " " span.muted { (format!("{:?}", s.package.kind)) } }
                        td { (format!("{:?}", s.status))
                            @if let Some(e) = &s.last_error { br; span.muted.err { (e) } } }
                        td.n { (s.rows_applied) }
                        td.n { (s.bytes_done) }
                        td { (age(now_ms.saturating_sub(s.updated_at_ms))) " ago" }
                        td { (history(&s.history)) }
                    }
                }
            } }
        }
    }
}

fn uploads(sessions: &[UploadSession], now_ms: i64) -> Markup {
    html! {
        @if !sessions.is_empty() {
            div.scroll { table #uploads {
                tr { th { "Table" } th { "Counters" } th { "Rows" } th { "Status" } th { "Changed" } th { "History" } }
                @for s in sessions {
                    tr {
                        td { (s.table) }
                        td.n { (s.first_counter) "–" (s.last_counter) }
                        td.n { (s.rows) }
                        td { (format!("{:?}", s.status))
                            @if let Some(e) = &s.last_error { br; span.muted.err { (e) } } }
                        td { (age(now_ms.saturating_sub(s.updated_at_ms))) " ago" }
                        td { (history(&s.history)) }
                    }
                }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::screen::tests::doc;
    use crate::status::{ApplyProgress, SuspendedState};

    #[test]
    fn a_suspended_store_shows_why_and_a_resume_form_and_escapes_what_it_shows() {
        let mut d = doc();
        d.healthy = false;
        d.health_reasons = vec!["downloads suspended".into()];
        d.suspended = Some(SuspendedState {
            package_id: Some(uuid::Uuid::nil()),
            reason: Some("table `<script>alert(1)</script>` refused".into()),
        });
        d.apply_progress = Some(ApplyProgress {
            package_id: uuid::Uuid::nil(),
            rows: 250,
            total: 1000,
        });
        let page = render(&d, 1_000_000, None).into_string();
        assert!(
            page.contains("<title>cdx store-0001 UNHEALTHY</title>"),
            "{page}"
        );
        assert!(
            page.contains(r#"<form method="post" action="/resume">"#),
            "{page}"
        );
        assert!(page.contains(r#"id="suspended-package">00000000-0000-0000-0000-000000000000<"#));
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains(r#"<progress max="1000" value="250">"#),
            "{page}"
        );
        assert!(page.contains("250 of 1000 rows"), "{page}");
        assert!(page.contains("the oldest published 10m ago"), "{page}");
        assert!(page.contains("1970-01-01T00:16:40.000Z"), "{page}");
    }

    #[test]
    fn a_healthy_store_has_no_form() {
        let page = render(&doc(), 1_000_000, Some(&Notice::Resumed("p1".into()))).into_string();
        assert!(
            page.contains(r#"id="health"><strong>Healthy</strong>"#),
            "{page}"
        );
        assert!(!page.contains("<form"), "{page}");
        assert!(page.contains("Resumed package"), "{page}");
    }
}
