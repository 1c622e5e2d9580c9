//! The service databases on the stack's PostgreSQL and their schema migrations.
//!
//! Each service owns one database (`catalog`, `warehouse`, `orders`, `payments`, `storefront`,
//! `recommendations`, `images`); its schema is
//! the SQL files in `migrations/<database>/`, applied in file-name order. A database records
//! what it has applied in `storefleet_migrations(name, applied_at)`, and each migration runs
//! in one transaction together with its tracking row: a migration is applied completely and
//! recorded, or not at all, and a re-run applies only what is new. Concurrent runners on one
//! database are serialised by an advisory lock. Since it runs inside a transaction, a
//! migration must not manage its own (`BEGIN`/`COMMIT`) nor use statements that cannot run in
//! one (`CREATE INDEX CONCURRENTLY`). An applied migration is never re-run (nothing checks its
//! content), so a change to one must be a new file.

use std::path::{Path, PathBuf};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::{io, StackConfig, StackError};

/// The service databases `fleet stack up` creates, each with `migrations/<name>/`.
pub const DATABASES: [&str; 7] = [
    "catalog",
    "warehouse",
    "orders",
    "payments",
    "storefront",
    "recommendations",
    "images",
];

/// Arbitrary constant key of the advisory lock that serialises migration runners.
const MIGRATION_LOCK: i64 = 0x5354_4f52_4546_4c54; // "STOREFLT"

/// The migrations folder: `migrations/` beside `schemas/`, i.e. beside the topology file.
pub fn migrations_dir(topology: &topology::Topology) -> PathBuf {
    topology
        .schema_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join("migrations")
}

/// Creates every service database that is missing and applies its new migrations. Returns
/// the migrations applied now, as `<database>/<file>`.
pub async fn prepare(
    config: &StackConfig,
    topology: &topology::Topology,
) -> Result<Vec<String>, StackError> {
    let dir = migrations_dir(topology);
    let admin_url = config.postgres_url("postgres");
    let mut applied = Vec::new();
    for database in DATABASES {
        if create_database(&admin_url, database).await? {
            info!(database, "database created");
        }
        let names = apply_migrations(&config.postgres_url(database), &dir.join(database)).await?;
        for name in names {
            info!(database, migration = %name, "migration applied");
            applied.push(format!("{database}/{name}"));
        }
    }
    Ok(applied)
}

/// Creates `name` on the server `admin_url` points at, unless it exists. Returns whether it
/// was created. Names are restricted to `[a-z0-9_]` so they need no quoting.
pub async fn create_database(admin_url: &str, name: &str) -> Result<bool, StackError> {
    check_name(name)?;
    scoped(admin_url, "postgres", async |client| {
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(pg(format!("look up database {name}")))?
            .is_some();
        if exists {
            return Ok(false);
        }
        match client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            Ok(()) => Ok(true),
            // Another runner created it between the look-up and here.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
            Err(e) => Err(pg(format!("create database {name}"))(e)),
        }
    })
    .await
}

/// Drops `name` (tests' scratch databases), closing its other sessions first.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), StackError> {
    check_name(name)?;
    scoped(admin_url, "postgres", async |client| {
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map_err(pg(format!("drop database {name}")))
    })
    .await
}

fn check_name(name: &str) -> Result<(), StackError> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name.is_empty() && plain {
        Ok(())
    } else {
        Err(StackError::Failed(format!(
            "database name {name:?} must be lower-case letters, digits and `_`"
        )))
    }
}

/// The `*.sql` files of `dir` in file-name order; a missing folder has none.
pub fn migration_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, StackError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("read {}", dir.display()))(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(format!("read {}", dir.display())))?.path();
        if !path.is_file() || path.extension().is_none_or(|ext| ext != "sql") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                StackError::Failed(format!("migration file name {path:?} is not UTF-8"))
            })?
            .to_string();
        files.push((name, path));
    }
    files.sort();
    Ok(files)
}

/// Applies the migrations of `dir` that `database_url`'s database has not recorded yet, each
/// in its own transaction with its tracking row. Returns the names applied now.
pub async fn apply_migrations(database_url: &str, dir: &Path) -> Result<Vec<String>, StackError> {
    let files = migration_files(dir)?;
    scoped(database_url, "migrations", async |client| {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg("take the migration lock"))?;
        let result = apply_locked(client, &files).await;
        if let Err(error) = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await
        {
            // The session ends right after; the server releases the lock then.
            warn!(%error, "failed to release the migration lock");
        }
        result
    })
    .await
}

async fn apply_locked(
    client: &mut Client,
    files: &[(String, PathBuf)],
) -> Result<Vec<String>, StackError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS storefleet_migrations (\
                 name text PRIMARY KEY, \
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg("create storefleet_migrations"))?;
    let done: Vec<String> = client
        .query("SELECT name FROM storefleet_migrations", &[])
        .await
        .map_err(pg("read storefleet_migrations"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut applied = Vec::new();
    for (name, path) in files {
        if done.contains(name) {
            continue;
        }
        let sql = std::fs::read_to_string(path).map_err(io(format!("read {}", path.display())))?;
        let transaction = client
            .transaction()
            .await
            .map_err(pg(format!("begin migration {name}")))?;
        transaction
            .batch_execute(&sql)
            .await
            .map_err(pg(format!("migration {}", path.display())))?;
        transaction
            .execute(
                "INSERT INTO storefleet_migrations (name, applied_at) VALUES ($1, now())",
                &[name],
            )
            .await
            .map_err(pg(format!("record migration {name}")))?;
        transaction
            .commit()
            .await
            .map_err(pg(format!("commit migration {name}")))?;
        applied.push(name.clone());
    }
    Ok(applied)
}

/// `work` with a client of its own on `url`, closed (its connection's task ended) before
/// this returns.
async fn scoped<T>(
    url: &str,
    database: &str,
    work: impl AsyncFnOnce(&mut Client) -> Result<T, StackError>,
) -> Result<T, StackError> {
    ::pg::with_client(url, database, work)
        .await
        .map_err(pg(format!("connect to {url}")))?
}

/// A client on `url` (plain TCP: the stack's PostgreSQL listens on loopback only) that owns
/// its connection's task, for the tools (load generator, benches): [`::pg::Owned::close`]
/// waits for it, dropping the client ends it. The fleet's own components use `pg` directly.
pub async fn connect(url: &str) -> Result<::pg::Owned, StackError> {
    ::pg::Owned::connect(url, "tool")
        .await
        .map_err(pg(format!("connect to {url}")))
}

pub(crate) fn pg(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> StackError {
    let what = what.into();
    move |source| StackError::Postgres { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_are_sql_only_in_name_order_and_a_missing_folder_is_empty() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        for name in ["0002_b.sql", "0001_a.sql", "0010_c.sql", "notes.md"] {
            std::fs::write(dir.join(name), "SELECT 1;").unwrap();
        }
        std::fs::create_dir_all(dir.join("0003_folder.sql")).unwrap();
        let names: Vec<String> = migration_files(dir)
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["0001_a.sql", "0002_b.sql", "0010_c.sql"]);
        assert!(migration_files(&dir.join("absent")).unwrap().is_empty());
    }

    #[test]
    fn database_names_need_no_quoting() {
        assert!(check_name("seed_test_1a").is_ok());
        for bad in ["", "Catalog", "a-b", "x\"; DROP", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
