//! openraft's own storage test suite against the RocksDB log store and state machine.

use kizuna_store::raft::TypeConfig;
use kizuna_store::{self as store, LogStore, StateMachineStore};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        // With a master key: the suite then runs over sealed log entries.
        let masters = store::MasterKeys::new(store::MasterKey::from_secret(&[3; 32]), Vec::new());
        let (log, sm) =
            store::open(dir.path(), masters).map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RocksBuilder).await?;
    Ok(())
}
