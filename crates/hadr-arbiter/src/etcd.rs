//! Placeholder: being written.

/// Not written yet: every call fails.
pub struct EtcdArbiter {
    endpoint: String,
}

impl EtcdArbiter {
    /// A key in etcd.
    pub fn new(endpoints: Vec<String>, key: String) -> EtcdArbiter {
        EtcdArbiter {
            endpoint: format!("{}{key}", endpoints.join(",")),
        }
    }
}

#[async_trait::async_trait]
impl crate::Arbiter for EtcdArbiter {
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
        Box::new(EtcdArbiter {
            endpoint: self.endpoint.clone(),
        })
    }
    fn info(&self) -> crate::ArbiterInfo {
        crate::ArbiterInfo {
            kind: "etcd".into(),
            endpoint: self.endpoint.clone(),
            stateful: true,
        }
    }
}

impl EtcdArbiter {
    fn unbuilt(&self) -> crate::ArbiterError {
        crate::ArbiterError::Unavailable {
            endpoint: self.endpoint.clone(),
            message: "this arbiter backend is not built yet".into(),
        }
    }
}
