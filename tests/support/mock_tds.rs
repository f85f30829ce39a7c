//! A mock SQL Server (`mssql-mock-tds`, a TDS server in process) for the
//! tests that talk TDS; included by path from each test crate that needs it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mssql_mock_tds::{
    ColumnDefinition, ColumnValue, MockTdsServer, QueryResponse, Row, SqlDataType,
};
use tokio::sync::oneshot;

/// A mock SQL Server on its own runtime.
pub struct Mock {
    pub runtime: tokio::runtime::Runtime,
    pub addr: SocketAddr,
    pub registry: Arc<tokio::sync::Mutex<mssql_mock_tds::QueryRegistry>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Mock {
    pub fn start() -> Mock {
        Mock::start_at("127.0.0.1:0")
    }

    pub fn start_at(addr: &str) -> Mock {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(MockTdsServer::new(addr)).unwrap();
        let (addr, registry) = (server.local_addr(), server.query_registry());
        let (stop, stopped) = oneshot::channel();
        runtime.spawn(server.run_with_shutdown(stopped));
        Mock {
            runtime,
            addr,
            registry,
            stop: Some(stop),
        }
    }

    pub fn register(&self, query: &str, response: QueryResponse) {
        self.runtime
            .block_on(self.registry.lock())
            .register(query, response);
    }

    /// Stops listening and drops every connection it has.
    pub fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

pub fn bigint(n: i64) -> QueryResponse {
    QueryResponse::new(
        vec![ColumnDefinition::new("", SqlDataType::BigInt)],
        vec![Row::new(vec![ColumnValue::BigInt(n)])],
    )
}

pub fn int_rows(values: &[i32]) -> QueryResponse {
    QueryResponse::new(
        vec![ColumnDefinition::new("", SqlDataType::Int)],
        values
            .iter()
            .map(|&v| Row::new(vec![ColumnValue::Int(v)]))
            .collect(),
    )
}
