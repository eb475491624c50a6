//! Placeholder: being written.

/// Not written yet: every call fails.
pub struct NetArbiter {
    endpoint: String,
}

impl NetArbiter {
    /// An address that must answer.
    pub fn new(host: String, port: u16) -> NetArbiter {
        NetArbiter {
            endpoint: format!("{host}:{port}"),
        }
    }
}

#[async_trait::async_trait]
impl crate::Arbiter for NetArbiter {
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
        Box::new(NetArbiter {
            endpoint: self.endpoint.clone(),
        })
    }
    fn info(&self) -> crate::ArbiterInfo {
        crate::ArbiterInfo {
            kind: "net".into(),
            endpoint: self.endpoint.clone(),
            stateful: false,
        }
    }
}

impl NetArbiter {
    fn unbuilt(&self) -> crate::ArbiterError {
        crate::ArbiterError::Unavailable {
            endpoint: self.endpoint.clone(),
            message: "this arbiter backend is not built yet".into(),
        }
    }
}
