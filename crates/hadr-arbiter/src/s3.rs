//! Placeholder: being written.

use std::path::PathBuf;

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

/// Not written yet: every call fails.
pub struct S3Arbiter {
    endpoint: String,
}

impl S3Arbiter {
    /// An object in an S3-compatible store.
    pub fn new(cfg: S3Config) -> Result<S3Arbiter, crate::ArbiterError> {
        Ok(S3Arbiter {
            endpoint: format!("s3://{}/{}", cfg.bucket, cfg.key),
        })
    }
}

#[async_trait::async_trait]
impl crate::Arbiter for S3Arbiter {
    async fn read(&self) -> Result<Option<crate::Stored>, crate::ArbiterError> {
        Err(self.unbuilt())
    }
    async fn write(
        &self,
        _expected: Option<&crate::Version>,
        _record: &crate::LeaseRecord,
    ) -> Result<crate::Stored, crate::ArbiterError> {
        Err(self.unbuilt())
    }
    fn probe(&self) -> Box<dyn crate::Arbiter> {
        Box::new(S3Arbiter {
            endpoint: self.endpoint.clone(),
        })
    }
    fn info(&self) -> crate::ArbiterInfo {
        crate::ArbiterInfo {
            kind: "s3".into(),
            endpoint: self.endpoint.clone(),
            stateful: true,
        }
    }
}

impl S3Arbiter {
    fn unbuilt(&self) -> crate::ArbiterError {
        crate::ArbiterError::Unavailable {
            endpoint: self.endpoint.clone(),
            message: "this arbiter backend is not built yet".into(),
        }
    }
}
