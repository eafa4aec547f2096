//! Versioned events on every backend: one machine in three releases, each
//! storing `Delivered` events in its own shape, all read by the third
//! through history, `as_of`, the audit, streams and consumers; an event
//! newer than the code is a typed error; events tables created before
//! event versions gain the column through a generated migration.

use futures::StreamExt;
use statefold::migrate::{Dialect, Generate, Generated, Migrations};
use statefold::{
    Consumer, Envelope, Error, Handler, HandlerError, Machine, MySql, Postgres, Sqlite, Start, Store, StreamOptions, Tx,
};
use statefold_tests::db::TestBackend;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first release: a delivery is signed for.
mod v1 {
    #[derive(statefold::Machine, Clone, Debug, PartialEq)]
    #[machine(table = "parcels")]
    pub(crate) enum Parcel {
        #[initial]
        Sent { address: String },
        #[from(Sent)]
        Delivered { signed_by: String },
    }
}

/// The second: the signature is stored as `signature`, and whether the
/// parcel was left at the door is recorded. Version 1 events are upcast.
mod v2 {
    #[derive(statefold::Machine, Clone, Debug, PartialEq)]
    #[machine(table = "parcels")]
    pub(crate) enum Parcel {
        #[initial]
        Sent { address: String },
        #[from(Sent)]
        #[event(version = 2, upcast(1 => super::upcast::signature))]
        Delivered {
            #[serde(rename = "signature")]
            signed_by: String,
            at_door: Option<bool>,
        },
    }
}

/// The third: the payload's names are camel case. Versions 1 and 2 are upcast.
mod v3 {
    #[derive(statefold::Machine, Clone, Debug, PartialEq)]
    #[machine(table = "parcels")]
    pub(crate) enum Parcel {
        #[initial]
        Sent { address: String },
        #[from(Sent)]
        #[event(version = 3, upcast(1 => super::upcast::signature, 2 => super::upcast::camel_case))]
        #[serde(rename_all = "camelCase")]
        Delivered {
            #[serde(rename = "signature")]
            signed_by: String,
            at_door: Option<bool>,
        },
    }
}

/// The upcasters: each turns one version's payload into the next one's.
mod upcast {
    use serde_json::Value;

    fn rename(mut payload: Value, from: &str, to: &str) -> Result<Value, String> {
        let fields = payload.as_object_mut().ok_or("the payload is not an object")?;
        if let Some(value) = fields.remove(from) {
            fields.insert(to.to_owned(), value);
        }
        Ok(payload)
    }

    /// Version 1 -> 2: `signed_by` is stored as `signature`.
    pub(crate) fn signature(payload: Value) -> Result<Value, String> {
        let fields = payload.as_object().ok_or("the payload is not an object")?;
        if !fields.contains_key("signed_by") {
            return Err("a version 1 delivery has `signed_by`".to_owned());
        }
        rename(payload, "signed_by", "signature")
    }

    /// Version 2 -> 3: `at_door` is stored as `atDoor`.
    pub(crate) fn camel_case(payload: Value) -> Result<Value, String> {
        rename(payload, "at_door", "atDoor")
    }
}

/// A migrations root of its own, removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self(std::env::temp_dir().join(format!("sf_versions_{test}_{}_{nanos}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Records every event it handles, and says when it has seen `until`.
struct Collect {
    seen: Arc<Mutex<Vec<Envelope<v3::Parcel>>>>,
    until: usize,
    done: Arc<tokio::sync::Notify>,
}

impl<B: statefold::Backend> Handler<v3::Parcel, B> for Collect {
    async fn handle(&mut self, _: &mut Tx<'static, B>, event: &Envelope<v3::Parcel>) -> Result<(), HandlerError> {
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.push(event.clone());
        if seen.len() == self.until {
            self.done.notify_one();
        }
        Ok(())
    }
}

fn delivered(signed_by: &str, at_door: Option<bool>) -> v3::Parcel {
    v3::Parcel::Delivered { signed_by: signed_by.into(), at_door }
}

async fn three_releases<B: TestBackend + Dialect>()
where
    <B::Db as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let Some(db) = B::create("versions").await else { return };
    let root = TempDir::new(B::DIR);
    let migrations = Migrations::<B>::new(&root.0);
    let options = Generate::default();

    // Given parcels delivered under the first release
    migrations.generate(&[v1::Parcel::DEF], &options).unwrap();
    migrations.apply(&db.url).await.unwrap();
    let first = Store::<v1::Parcel, B>::new(db.pool.clone());
    let sent = first.insert(v1::ParcelSent { address: "1 Main St".into() }).await.unwrap();
    let ada = *sent.id();
    first.apply(sent.transition(v1::ParcelDelivered { signed_by: "ada".into() })).await.unwrap();
    let bob = *first.insert(v1::ParcelSent { address: "2 Main St".into() }).await.unwrap().id();
    let cy = *first.insert(v1::ParcelSent { address: "3 Main St".into() }).await.unwrap().id();

    // And under the second, once its migration is applied
    let Generated::Written { changes, .. } = migrations.generate(&[v2::Parcel::DEF], &options).unwrap() else {
        panic!("a new column needs a migration");
    };
    assert!(changes.iter().any(|c| c.contains("version 2 (events stored at version 1 are upcast")), "{changes:?}");
    migrations.apply(&db.url).await.unwrap();
    let second = Store::<v2::Parcel, B>::new(db.pool.clone());
    let v2::ParcelState::Sent(sent) = second.load(&bob).await.unwrap() else { panic!("bob's parcel is sent") };
    second.apply(sent.transition(v2::ParcelDelivered { signed_by: "bob".into(), at_door: Some(true) })).await.unwrap();

    // And under the third, whose payload changes need no SQL
    let recorded = migrations.generate(&[v3::Parcel::DEF], &options).unwrap();
    assert!(matches!(&recorded, Generated::Recorded { changes } if changes[0].contains("version 3")), "{recorded:?}");
    migrations.check(&[v3::Parcel::DEF]).unwrap();
    let third = Store::<v3::Parcel, B>::new(db.pool.clone());
    let v3::ParcelState::Sent(sent) = third.load(&cy).await.unwrap() else { panic!("cy's parcel is sent") };
    third.apply(sent.transition(v3::ParcelDelivered { signed_by: "cy".into(), at_door: Some(false) })).await.unwrap();

    // Then the third reads every delivery in its own shape, through history
    let expected = [
        (ada, delivered("ada", None), 1),
        (bob, delivered("bob", Some(true)), 2),
        (cy, delivered("cy", Some(false)), 3),
    ];
    for (id, event, version) in expected {
        let history = third.history(&id).await.unwrap();
        assert_eq!(history[1].event, event, "record {id}");
        assert_eq!(history[1].schema_version, version, "record {id}");
        assert_eq!(history[0].schema_version, 1, "`Sent` stays at version 1");
        // And as of now, folded from those events
        let row = third.as_of(&id, chrono::Utc::now()).await.unwrap().expect("the record existed");
        let v3::Parcel::Delivered { signed_by, at_door } = event else { unreachable!() };
        assert_eq!((row.signed_by, row.at_door), (Some(signed_by), at_door), "record {id}");
    }
    // And the rows written by each release equal the fold of their events
    let audit = third.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    assert_eq!((audit.records, audit.events), (3, 6));

    // And a stream delivers them all, upcast
    let stream: Vec<_> = third.stream_with(Start::Beginning, StreamOptions::default()).take(6).collect().await;
    let deliveries: Vec<(i64, u32)> = stream
        .iter()
        .map(|e| e.as_ref().expect("every event decodes"))
        .filter(|e| matches!(e.event, v3::Parcel::Delivered { .. }))
        .map(|e| (e.record_id, e.schema_version))
        .collect();
    assert_eq!(deliveries, [(ada, 1), (bob, 2), (cy, 3)]);

    // And so does a consumer
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut handler = Collect { seen: seen.clone(), until: 6, done: done.clone() };
    let options = StreamOptions::default().poll_interval(Duration::from_millis(20));
    let consumer = Consumer::new(&third, "deliveries").stream_options(options);
    let run = consumer.run(&mut handler, done.notified());
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("the consumer catches up").unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    let from_stream: Vec<&Envelope<v3::Parcel>> = stream.iter().map(|e| e.as_ref().unwrap()).collect();
    assert!(seen.iter().zip(from_stream).all(|(a, b)| a == b), "the consumer saw what the stream delivered");

    // And the second release, rolled back to, reads what it knows and
    // names the event it cannot: written by a newer release
    let events = second.history(&bob).await.unwrap();
    assert_eq!(events[1].event, v2::Parcel::Delivered { signed_by: "bob".into(), at_door: Some(true) });
    let newer = second.history(&cy).await.unwrap_err();
    assert!(matches!(&newer, Error::NewerEvent { state: "Delivered", version: 3, current: 2, .. }), "{newer}");
    assert!(newer.to_string().contains("this code reads up to version 2"), "{newer}");
    let audit = second.audit().await.unwrap();
    assert_eq!(audit.mismatches.len(), 1, "{audit}");
    assert!(audit.to_string().contains("version 3 of `Delivered`"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_releases_on_sqlite() {
    three_releases::<Sqlite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(statefold_no_postgres_url, ignore = "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)")]
async fn three_releases_on_postgres() {
    three_releases::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(statefold_no_mysql_url, ignore = "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)")]
async fn three_releases_on_mysql() {
    three_releases::<MySql>().await;
}

/// Given an events table created before event versions (no
/// `schema_version`) and a snapshot of format 1, then the next migration
/// adds the column, and the events stored before read as version 1.
async fn tables_from_before_event_versions<B: TestBackend + Dialect>()
where
    <B::Db as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let Some(db) = B::create("preversions").await else { return };
    let root = TempDir::new(&format!("pre_{}", B::DIR));
    let migrations = Migrations::<B>::new(&root.0);
    migrations.generate(&[v1::Parcel::DEF], &Generate::default()).unwrap();
    migrations.apply(&db.url).await.unwrap();
    let store = Store::<v1::Parcel, B>::new(db.pool.clone());
    let ada = store.insert(v1::ParcelSent { address: "1 Main St".into() }).await.unwrap();

    // As the earlier release left them: no column, no event payloads in the snapshot
    db.execute("ALTER TABLE parcel_events DROP COLUMN schema_version", vec![]).await;
    let path = migrations.dir().join(statefold::migrate::SNAPSHOT_FILE);
    let mut snapshot: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    snapshot["format"] = 1.into();
    snapshot["machines"][0].as_object_mut().unwrap().remove("events");
    std::fs::write(&path, snapshot.to_string()).unwrap();
    assert!(store.history(ada.id()).await.is_err(), "the code needs the column");

    let drift = migrations.check(&[v1::Parcel::DEF]).unwrap_err();
    assert!(drift.to_string().contains("add column `schema_version`"), "{drift}");
    let Generated::Written { path, .. } = migrations.generate(&[v1::Parcel::DEF], &Generate::default()).unwrap() else {
        panic!("the column needs a migration");
    };
    assert!(path.ends_with("0002_parcel_events_add_schema_version.sql"), "{}", path.display());
    migrations.apply(&db.url).await.unwrap();
    migrations.check(&[v1::Parcel::DEF]).unwrap();
    let history = store.history(ada.id()).await.unwrap();
    assert_eq!(history[0].schema_version, 1);
    store.check_schema().await.unwrap();
}

#[tokio::test]
async fn tables_from_before_event_versions_on_sqlite() {
    tables_from_before_event_versions::<Sqlite>().await;
}

#[tokio::test]
#[cfg_attr(statefold_no_postgres_url, ignore = "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)")]
async fn tables_from_before_event_versions_on_postgres() {
    tables_from_before_event_versions::<Postgres>().await;
}

#[tokio::test]
#[cfg_attr(statefold_no_mysql_url, ignore = "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)")]
async fn tables_from_before_event_versions_on_mysql() {
    tables_from_before_event_versions::<MySql>().await;
}
