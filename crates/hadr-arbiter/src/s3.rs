//! The lease record as one object in an S3-compatible store
//! (`s3://BUCKET/KEY?endpoint=URL&region=R&access_key_file=F&secret_key_file=F`),
//! as DB2 10.1+ uses a cloud object store as its tiebreaker.
//!
//! # How the compare-and-swap maps onto S3
//!
//! The record is stored as JSON at `KEY`; its [`Version`] is the object's
//! ETag, exactly as the store returned it (quotes included).
//!
//! * [`Arbiter::read`] is one `GET`: body and ETag come from the same
//!   response, so they always belong together. No object: `None`.
//! * `write(None, r)` is a `PUT` with `If-None-Match: *`
//!   (`object_store`'s `PutMode::Create`): the store refuses it with
//!   `412 Precondition Failed` if the object exists.
//! * `write(Some(v), r)` is a `PUT` with `If-Match: v`
//!   (`PutMode::Update`): refused with `412` if the stored ETag is no longer
//!   `v`, and — on AWS — with `404` if the object was deleted, or `409` if
//!   another conditional write to the key is in flight.
//!
//! All of `412`, `409`, `304` and a `404` on an `If-Match` PUT are
//! [`ArbiterError::Conflict`]: someone else wrote, read again. A `401`/`403`
//! is [`ArbiterError::Credentials`]; no answer within the timeout (2 s by
//! default, for connecting and for the whole exchange) is
//! [`ArbiterError::Timeout`]; anything else is [`ArbiterError::Unavailable`].
//! Requests are never retried here: a retried conditional PUT whose first
//! attempt did land would come back `412` and be misreported, and the lease
//! loop above retries on its own schedule anyway.
//!
//! # Which stores honour conditional PUTs
//!
//! AWS S3 has honoured `If-None-Match: *` on `PutObject` since August 2024
//! and `If-Match` since November 2024 (AWS's "what's new" announcements).
//! `object_store`'s documentation names MinIO and Cloudflare R2 as
//! supporting both headers; MinIO releases before the fix for
//! minio/minio#21526 (reported August 2025) accepted an `If-Match` PUT to a
//! key that did not exist. For Ceph RGW and any other store, for any
//! release, and for any proxy or gateway in front of a store (which may
//! drop the headers): check with `hadr arbiter check`.
//! A store that silently ignored the headers would let two nodes both win,
//! so `check` tries a stale `If-Match` and an `If-None-Match` on an existing
//! object and refuses the store with [`ArbiterError::NotConditional`] if
//! either lands. The tests run against moto's S3 server behind a proxy
//! that serialises requests (moto does not apply conditional PUTs
//! atomically under concurrency: see `tests/s3.rs`).
//!
//! # The nonce rule
//!
//! An S3 ETag is (for plain single-part uploads) the MD5 of the body, so two
//! writes of byte-identical records would get the same ETag and a writer
//! holding the old version could overwrite the new one. So **every write
//! gets a fresh random nonce from this backend**: [`LeaseRecord::nonce`] is
//! replaced on each `write`, whatever the caller put there, and the record
//! returned in [`Stored`] is the one actually stored. Callers still raise
//! [`LeaseRecord::token`] on every write (it is the fencing token); they need
//! not, and cannot, choose the nonce.
//!
//! # Credentials
//!
//! `access_key_file` and `secret_key_file` each hold one line (the access
//! key id, the secret access key), like DB2's `/var/ct/cfg/<node>.access`
//! and `.secret`. Both must be given together, and each must be a regular
//! file that only its owner can read: a file whose mode lets the group or
//! others in (`mode & 0o077 != 0`), a missing, unreadable or empty file, is
//! refused with [`ArbiterError::Credentials`] before any request is made.
//!
//! If neither is given, the standard AWS environment applies, as the AWS
//! SDKs read it: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`, a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE`,
//! `AWS_ROLE_ARN`), an ECS task's or EKS pod's credentials, and failing all
//! of those the EC2 instance metadata service (`object_store` reads no
//! `~/.aws` profile). The bucket, key, endpoint and region always come from
//! the `s3://` setting, never from the environment.
//!
//! Plain `http://` endpoints are allowed only when the endpoint says
//! `http://` (a local MinIO, the tests' moto); everything else is HTTPS.

use std::error::Error as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    UpdateVersion,
};

use crate::{Arbiter, ArbiterError, ArbiterInfo, LeaseRecord, Stored, Version};

/// How long one request may take, connecting included, unless
/// [`S3Arbiter::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where an S3 lease object lives and how to authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Endpoint URL (None: AWS).
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// File holding the access key id (must be readable by its owner only).
    pub access_key_file: Option<PathBuf>,
    /// File holding the secret access key (likewise).
    pub secret_key_file: Option<PathBuf>,
}

/// One object in an S3-compatible store, written only with conditional PUTs.
/// (No `Debug`: the client inside holds the credentials.)
#[derive(Clone)]
pub struct S3Arbiter {
    store: Arc<AmazonS3>,
    bucket: String,
    key: String,
    path: Path,
    /// Where the requests go, for messages.
    url: String,
    timeout: Duration,
}

impl S3Arbiter {
    /// An object in an S3-compatible store, with [`DEFAULT_TIMEOUT`].
    /// Reads the credential files now; makes no request yet.
    pub fn new(cfg: S3Config) -> Result<S3Arbiter, ArbiterError> {
        S3Arbiter::with_timeout(cfg, DEFAULT_TIMEOUT)
    }

    /// Likewise, with every request bounded by `timeout`.
    pub fn with_timeout(cfg: S3Config, timeout: Duration) -> Result<S3Arbiter, ArbiterError> {
        let spec_err = |message: String| ArbiterError::Spec {
            spec: format!("s3://{}/{}", cfg.bucket, cfg.key),
            message,
        };
        let path = object_path(&cfg.bucket, &cfg.key)?;
        let url = match &cfg.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://s3.{}.amazonaws.com", cfg.region),
        };
        let allow_http = if url.starts_with("http://") {
            true
        } else if url.starts_with("https://") {
            false
        } else {
            return Err(spec_err(format!(
                "endpoint {:?} must start with http:// or https://",
                without_userinfo(&url)
            )));
        };

        let builder = match (&cfg.access_key_file, &cfg.secret_key_file) {
            (Some(access), Some(secret)) => AmazonS3Builder::new()
                .with_access_key_id(read_secret(access, "access key")?)
                .with_secret_access_key(read_secret(secret, "secret key")?),
            (None, None) => AmazonS3Builder::from_env(),
            (Some(f), None) | (None, Some(f)) => {
                return Err(ArbiterError::Credentials(format!(
                    "{} is given without its pair: set both access_key_file and secret_key_file, or neither (then the AWS environment applies)",
                    f.display()
                )))
            }
        };
        let store = builder
            .with_endpoint(&url)
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout)
                    .with_allow_http(allow_http),
            )
            .with_retry(RetryConfig {
                max_retries: 0,
                retry_timeout: timeout,
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| spec_err(e.to_string()))?;
        Ok(S3Arbiter {
            store: Arc::new(store),
            bucket: cfg.bucket,
            key: cfg.key,
            path,
            url,
            timeout,
        })
    }

    /// The object at `key` in the same bucket, through the same client.
    pub fn at_key(&self, key: &str) -> Result<S3Arbiter, ArbiterError> {
        Ok(S3Arbiter {
            store: Arc::clone(&self.store),
            bucket: self.bucket.clone(),
            path: object_path(&self.bucket, key)?,
            key: key.to_string(),
            url: self.url.clone(),
            timeout: self.timeout,
        })
    }

    fn endpoint(&self) -> String {
        format!(
            "s3://{}/{} @ {}",
            self.bucket,
            self.key,
            without_userinfo(&self.url)
        )
    }

    /// Run one request within the timeout.
    async fn bounded<T>(
        &self,
        request: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<object_store::Result<T>, ArbiterError> {
        tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| ArbiterError::Timeout {
                endpoint: self.endpoint(),
                timeout: self.timeout,
            })
    }

    /// What any error but a conflict or an absent object means.
    fn failure(&self, e: object_store::Error) -> ArbiterError {
        match e {
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. } => {
                ArbiterError::Credentials(format!("{} refused them: {}", self.endpoint(), e))
            }
            e if is_timeout(&e) => ArbiterError::Timeout {
                endpoint: self.endpoint(),
                timeout: self.timeout,
            },
            e => ArbiterError::Unavailable {
                endpoint: self.endpoint(),
                message: error_chain(&e),
            },
        }
    }
}

/// `url` with any `user:password@` in its authority replaced by `***@`:
/// the endpoint is shown in `/status`, logs and errors, and a URL can carry
/// credentials (which the store does not use: they come from the key files).
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `key` as an object path, refused if the store would not keep it as
/// written (leading, trailing or doubled `/`, `.` or `..` segments).
fn object_path(bucket: &str, key: &str) -> Result<Path, ArbiterError> {
    Path::parse(key)
        .ok()
        .filter(|p| !p.as_ref().is_empty() && p.as_ref() == key)
        .ok_or_else(|| ArbiterError::Spec {
            spec: format!("s3://{bucket}/{key}"),
            message: format!(
                "{key:?} is not a plain object key (no leading, trailing or doubled '/', no '.' or '..' segments)"
            ),
        })
}

/// The stored text of a credential file, refused unless only its owner can
/// read it (crates/hadr-secrets).
fn read_secret(path: &FsPath, what: &'static str) -> Result<String, ArbiterError> {
    hadr_secrets::read_private_text(path, what)
        .map_err(|e| ArbiterError::Credentials(e.to_string()))
}

/// True if a request failed because it took too long.
fn is_timeout(e: &object_store::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<HttpError>() {
            if h.kind() == HttpErrorKind::Timeout {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// An error and its causes on one line: object_store's own message often
/// leaves out the reason (connection refused, reset, …).
fn error_chain(e: &object_store::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

/// A nonce that differs from `old` (so the body, and so the ETag, differs).
fn fresh_nonce(old: u64) -> u64 {
    loop {
        let n: u64 = rand::random();
        if n != old {
            return n;
        }
    }
}

#[async_trait::async_trait]
impl Arbiter for S3Arbiter {
    async fn read(&self) -> Result<Option<Stored>, ArbiterError> {
        // Head and body within one timeout.
        let get = async {
            let got = self.store.get(&self.path).await?;
            let e_tag = got.meta.e_tag.clone();
            Ok((e_tag, got.bytes().await?))
        };
        let (e_tag, body) = match self.bounded(get).await? {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failure(e)),
        };
        let corrupt = |message: String| ArbiterError::Corrupt {
            endpoint: self.endpoint(),
            message,
        };
        let record: LeaseRecord =
            serde_json::from_slice(&body).map_err(|e| corrupt(e.to_string()))?;
        let e_tag = e_tag.ok_or_else(|| corrupt("the store sent no ETag with it".into()))?;
        Ok(Some(Stored {
            record,
            version: Version(e_tag),
        }))
    }

    async fn write(
        &self,
        expected: Option<&Version>,
        record: &LeaseRecord,
    ) -> Result<Stored, ArbiterError> {
        let mut record = record.clone();
        record.nonce = fresh_nonce(record.nonce);
        let body = serde_json::to_vec(&record).expect("a lease record always serialises");
        let mode = match expected {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion {
                e_tag: Some(v.0.clone()),
                version: None,
            }),
        };
        let put = self
            .store
            .put_opts(&self.path, PutPayload::from(body), PutOptions::from(mode));
        match self.bounded(put).await? {
            Ok(done) => {
                let e_tag = done.e_tag.ok_or_else(|| ArbiterError::Unavailable {
                    endpoint: self.endpoint(),
                    message: "the store answered a PUT without an ETag: it cannot be an arbiter"
                        .into(),
                })?;
                Ok(Stored {
                    record,
                    version: Version(e_tag),
                })
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. },
            ) => Err(ArbiterError::Conflict),
            Err(e) => Err(self.failure(e)),
        }
    }

    fn probe(&self) -> Box<dyn Arbiter> {
        Box::new(
            self.at_key(&format!("{}.check", self.key))
                .expect("a valid key plus \".check\" is a valid key"),
        )
    }

    fn info(&self) -> ArbiterInfo {
        ArbiterInfo {
            kind: "s3".into(),
            endpoint: self.endpoint(),
            stateful: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn credentials_in_an_endpoint_url_are_not_shown() {
        assert_eq!(
            without_userinfo("http://AKIA:s3cr3t@minio:9000/x@y"),
            "http://***@minio:9000/x@y"
        );
        assert_eq!(
            without_userinfo("https://s3.eu-west-1.amazonaws.com"),
            "https://s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(without_userinfo("minio:9000"), "minio:9000");
    }
}
