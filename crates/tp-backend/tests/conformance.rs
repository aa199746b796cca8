//! The conformance suite against both implementations.

mod memory {
    use std::sync::Arc;

    use tp_backend::{Backend, MemoryBackend};

    tp_backend::conformance_tests!(|options| async move {
        Ok(Arc::new(MemoryBackend::with_options(options)) as Arc<dyn Backend>)
    });
}

mod sqlite {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::future::BoxFuture;
    use tp_backend::conformance::Open;
    use tp_backend::{Backend, Options, Result, SqliteBackend};

    /// Opens databases in one temporary directory, removed with it.
    struct TempSqlite {
        dir: tempfile::TempDir,
        n: AtomicUsize,
    }

    fn temp_sqlite() -> TempSqlite {
        match tempfile::tempdir() {
            Ok(dir) => TempSqlite {
                dir,
                n: AtomicUsize::new(0),
            },
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    impl Open for TempSqlite {
        fn open(&self, options: Options) -> BoxFuture<'_, Result<Arc<dyn Backend>>> {
            let n = self.n.fetch_add(1, Ordering::Relaxed);
            let path = self.dir.path().join(format!("db{n}/tp.db"));
            Box::pin(async move {
                let b = SqliteBackend::open_with(path, options).await?;
                Ok(Arc::new(b) as Arc<dyn Backend>)
            })
        }
    }

    tp_backend::conformance_tests!(temp_sqlite());
}
