//! End-to-end tests of the agent: a real `cdx-server` on 127.0.0.1, real
//! SQLite channel databases, real files, the agent in process or as a real
//! `cdx-client` process.

mod agent {
    mod util;

    mod corrupt;
    mod process;
    mod reliable;
    mod supervision;
    mod sync;
    mod upload;
}
