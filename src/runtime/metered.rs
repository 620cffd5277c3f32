//! A [`KvStore`] decorator that times every operation for [`Metrics`] and
//! reports the store's own incidents (a bucket found missing and recreated)
//! through `on_error`, whichever thread's operation ran into them.

use std::sync::Arc;
use std::time::Instant;

use crate::runtime::shared::Shared;
use crate::store::{Entry, KvError, KvStore, Revision, Watch};

pub(crate) struct Metered {
    pub inner: Arc<dyn KvStore>,
    pub shared: Arc<Shared>,
}

impl Metered {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn KvStore>, shared: &Arc<Shared>) -> Arc<dyn KvStore> {
        Arc::new(Metered {
            inner,
            shared: shared.clone(),
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
        let metrics = &self.shared.metrics;
        metrics.kv_latency(bucket, op, started.elapsed());
        if let Err(e) = &result {
            if !e.is_conflict() {
                metrics.kv_failure(bucket, op);
            }
            if let KvError::Recreated(name) = e {
                self.shared
                    .store_forgot(KvError::Recreated(name.clone()), name);
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
        // Not timed (a watch lives long); a failure to open one is
        // reported by its opener (`Shared::watch`).
        self.inner.watch(key)
    }
}
