//! Uploads: every sale reaches headquarters once, even when re-sent.

use std::time::Duration;

use cdx::channel_db::ChannelDb;
use cdx::retail::UPLOAD_TABLES;

use super::util::*;

fn all_uploaded(hq: &Hq, store: &StoreDir) -> bool {
    UPLOAD_TABLES
        .iter()
        .all(|(t, _)| hq.uploaded(t) == store.rows(t) && store.rows(t) > 0)
}

/// Rows of `table` in the upload batches headquarters received.
fn rows_sent(hq: &Hq, table: &str) -> u64 {
    let filter = cdx_server::SessionFilter {
        channel: Some(CHANNEL.into()),
        direction: Some(cdx::status::Direction::Upload),
    };
    let list = hq.server.store().sessions(&filter).unwrap();
    list.upload
        .iter()
        .filter(|s| s.job == table)
        .map(|s| s.rows)
        .sum()
}

/// Every sale is uploaded once; after the watermark is lost (a channel
/// database restored from a backup), the agent starts from headquarters'
/// high-water mark: nothing is sent twice and the watermark comes back.
#[test]
fn uploads_every_sale_exactly_once_even_when_resent() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let mut pos = store.pos();
    pos.record_sales(700).unwrap();
    let extra = "[upload]\ninterval = \"200ms\"\nbatch_rows = 100\n";
    let run = run_agent(
        store.config(&hq.url(), "streaming", extra),
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        || all_uploaded(&hq, &store),
    );
    assert!(run.reached, "not every sale was uploaded");
    let (header, _) = UPLOAD_TABLES[0];
    assert_eq!(hq.uploaded(header), 700);
    let max_counter = store.db().watermark(header).unwrap();
    assert_eq!(max_counter, 700, "the watermark stops at the last sale");
    assert_eq!(run.status.watermarks[header].counter, 700);

    assert_eq!(rows_sent(&hq, header), 700);
    // Lose the watermark: the agent asks headquarters where it stands.
    let conn = rusqlite::Connection::open(store.channel_db()).unwrap();
    conn.execute("UPDATE cdx_upload_watermarks SET counter = 0", [])
        .unwrap();
    drop(conn);
    assert_eq!(store.db().watermark(header).unwrap(), 0);
    pos.record_sales(50).unwrap();
    let run = run_agent(
        store.config(&hq.url(), "streaming", extra),
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        || store.db().watermark(header).unwrap() == 750 && all_uploaded(&hq, &store),
    );
    assert!(
        run.reached,
        "the uploads after the lost watermark did not complete"
    );
    assert_eq!(
        rows_sent(&hq, header),
        750,
        "rows headquarters held were sent again"
    );
    for (table, _) in UPLOAD_TABLES {
        assert_eq!(
            hq.uploaded(table),
            store.rows(table),
            "{table} at headquarters"
        );
    }
    assert_eq!(hq.uploaded(header), 750, "sales were stored twice");
}
