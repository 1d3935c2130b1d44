//! The store under faults: a damaged file, a stalled disk.

use super::*;

fn upsert(ext: &str) -> Write {
    Write::UpsertUser {
        extension: ext.into(),
        email: format!("{ext}@example.com").into(),
        direction: "both".into(),
    }
}

fn db_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("state.db")
}

/// A file that is not a database, and a database with a damaged page: both are refused with
/// an error naming the file and saying to move it aside (restarting would not help).
#[test]
fn a_damaged_database_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    std::fs::write(&path, vec![0x5a_u8; 64 * 1024]).unwrap();
    let err = Store::open(&path).err().expect("garbage refused");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains(&path.display().to_string()), "{shown}");
    assert!(shown.contains("move the file aside"), "{shown}");

    // A real database whose table pages are overwritten after the header page.
    std::fs::remove_file(&path).unwrap();
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = Store::open(&path).unwrap();
        rt.block_on(async {
            store
                .write_all((0..2000).map(|i| upsert(&format!("{i}"))).collect())
                .await;
            store.close().await.unwrap();
        });
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8192, "database has several pages");
    for b in &mut bytes[4096..8192] {
        *b = 0xa5;
    }
    std::fs::write(&path, bytes).unwrap();
    let err = Store::open(&path).err().expect("damaged page refused");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
}

/// A stalled disk (the thread parked) fills the queue: writers wait instead of growing memory
/// or dropping, each wait is counted, and one WARN says the database is slow.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_delays_writers_and_says_so_once() {
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    );
    let store = Store::open_in_memory().unwrap();
    let (release, parked) = std::sync::mpsc::channel();
    store.hold(parked).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..super::worker::QUEUE + 10 {
                store.write(upsert(&i.to_string())).await;
            }
        })
    };
    let mut turns = 0;
    while !writer.is_finished() && store.stats().stalls == 0 {
        turns += 1;
        assert!(turns < 1_000_000, "the writer never found the queue full");
        tokio::task::yield_now().await;
    }
    assert!(
        !writer.is_finished(),
        "the writer waits while the disk is stalled"
    );
    release.send(()).unwrap();
    writer.await.unwrap();
    store.flush().await.unwrap();
    let stats = store.stats();
    assert!(stats.stalls >= 1, "{stats:?}");
    assert_eq!(stats.writes_applied, (super::worker::QUEUE + 10) as u64);
    let text = logs.text();
    assert_eq!(text.matches("is slow").count(), 1, "{text}");
    store.close().await.unwrap();
}

#[derive(Clone, Default)]
struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}
