//! HTTP Basic authentication of channel databases.
//!
//! Every `/v1` call carries `channel id : secret`. The server keeps only a
//! random salt and SHA-256(salt || secret) per channel and compares hashes in
//! constant time. [`Authenticated`] is the extractor handlers take.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use base64::Engine as _;

use super::error::ServerError;
use super::offload::blocking;
use super::store::Store;

/// Splits an `Authorization: Basic base64(id:secret)` header.
pub(crate) fn parse_basic(value: &header::HeaderValue) -> Result<(String, String), ServerError> {
    const MALFORMED: &str = "malformed HTTP Basic authorization header";
    let value = value
        .to_str()
        .map_err(|_| ServerError::MissingCredentials(MALFORMED))?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or(ServerError::MissingCredentials(
            "the authorization header is not HTTP Basic",
        ))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ServerError::MissingCredentials(MALFORMED))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| ServerError::MissingCredentials(MALFORMED))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or(ServerError::MissingCredentials(MALFORMED))?;
    Ok((id.to_owned(), secret.to_owned()))
}

/// The channel database that made the request, authenticated.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub channel_id: String,
    pub data_group: String,
}

impl FromRequest for Authenticated {
    type Error = ServerError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let store = req.app_data::<web::Data<Store>>().cloned();
        let credentials = match req.headers().get(header::AUTHORIZATION) {
            Some(value) => parse_basic(value),
            None => Err(ServerError::MissingCredentials(
                "missing HTTP Basic authorization (channel database id and secret)",
            )),
        };
        Box::pin(async move {
            let (id, secret) = credentials?;
            let store = store.expect("the server registers its Store as app data");
            // Kept in memory: one SHA-256, no hop to the blocking pool.
            let channel = match store.authenticate_cached(&id, &secret) {
                Some(known) => known?,
                None => blocking(move || store.authenticate(&id, &secret)).await?,
            };
            Ok(Authenticated {
                channel_id: channel.id,
                data_group: channel.data_group,
            })
        })
    }
}
