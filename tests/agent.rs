//! End-to-end tests of the agent: a real `cdx-server` on 127.0.0.1, real
//! SQLite channel databases (and a TDS server in process for SQL Server's
//! connection path), real files, the agent in process or as a real
//! `cdx-client` process.

mod agent {
    mod util;

    #[path = "../support/mock_tds.rs"]
    mod mock_tds;

    mod browser;
    mod cdn;
    mod chaos;
    mod corrupt;
    mod diskfull;
    mod edges;
    mod exact;
    mod hostile;
    mod lifecycle;
    mod operators;
    mod outage;
    mod page;
    mod process;
    mod prometheus;
    mod reliable;
    mod resources;
    mod sqlserver;
    mod supervision;
    mod sync;
    mod trust;
    mod upload;
}
