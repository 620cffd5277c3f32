//! A [`KvStore`] decorator that times every operation for [`Metrics`].

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Metrics;
use crate::store::{Entry, KvError, KvStore, Revision, Watch};

pub(crate) struct Metered {
    pub inner: Arc<dyn KvStore>,
    pub metrics: Arc<dyn Metrics>,
}

impl Metered {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn KvStore>, metrics: &Arc<dyn Metrics>) -> Arc<dyn KvStore> {
        Arc::new(Metered {
            inner,
            metrics: metrics.clone(),
        })
    }

    fn time<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let started = Instant::now();
        let result = f();
        let bucket = self.inner.bucket();
        self.metrics.kv_latency(bucket, op, started.elapsed());
        if let Err(e) = &result {
            if !e.is_conflict() {
                self.metrics.kv_failure(bucket, op);
            }
        }
        result
    }
}

impl KvStore for Metered {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<Revision, KvError> {
        self.time("create", || self.inner.create(key, value))
    }

    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<Revision, KvError> {
        self.time("update", || self.inner.update(key, value, expected))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<Revision, KvError> {
        self.time("put", || self.inner.put(key, value))
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, KvError> {
        self.time("get", || self.inner.get(key))
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(), KvError> {
        self.time("delete", || self.inner.delete(key, expected))
    }

    fn keys(&self) -> Result<Vec<String>, KvError> {
        self.time("keys", || self.inner.keys())
    }

    fn watch(&self, key: Option<&str>) -> Result<Watch, KvError> {
        self.inner.watch(key)
    }
}
