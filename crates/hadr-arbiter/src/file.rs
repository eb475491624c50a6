//! Placeholder: being written.

/// Not written yet: every call fails.
pub struct FileArbiter {
    endpoint: String,
}

impl FileArbiter {
    /// A lease file at `path`.
    pub fn new(path: std::path::PathBuf) -> FileArbiter {
        FileArbiter {
            endpoint: path.display().to_string(),
        }
    }
}

#[async_trait::async_trait]
impl crate::Arbiter for FileArbiter {
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
        Box::new(FileArbiter {
            endpoint: self.endpoint.clone(),
        })
    }
    fn info(&self) -> crate::ArbiterInfo {
        crate::ArbiterInfo {
            kind: "file".into(),
            endpoint: self.endpoint.clone(),
            stateful: true,
        }
    }
}

impl FileArbiter {
    fn unbuilt(&self) -> crate::ArbiterError {
        crate::ArbiterError::Unavailable {
            endpoint: self.endpoint.clone(),
            message: "this arbiter backend is not built yet".into(),
        }
    }
}
