//! The heap an idle control connection costs, counted by a global allocator (this test binary
//! holds only this test, so nothing else allocates meanwhile). A regression test for the small
//! control-loop buffers (PATCHES.md, patch 15): `Framed` reserved 16 KiB per session up front
//! (measured here: 28.9 KB per session before, 13.6 KB after).

#![allow(missing_docs)]
// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use libunftp::ServerBuilder;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use unftp_sbe_fs::Filesystem;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most `LIVE` has been since it was last reset (`reset_peak`).
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// The tests of this binary run one at a time: each counts the heap of the whole process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn reset_peak() -> isize {
    let now = LIVE.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

// SAFETY: every call is forwarded to the system allocator unchanged; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

async fn login(addr: std::net::SocketAddr) -> BufReader<TcpStream> {
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let mut line = String::new();
    c.read_line(&mut line).await.unwrap();
    for cmd in ["USER anonymous\r\n", "PASS x@\r\n"] {
        c.get_mut().write_all(cmd.as_bytes()).await.unwrap();
        line.clear();
        c.read_line(&mut line).await.unwrap();
    }
    assert!(line.starts_with("230"), "{line}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_logged_in_session_costs_the_server_less_than_20_kib_of_heap() {
    let _serial = SERIAL.lock().await;
    let root = std::env::temp_dir();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let root = root.clone();
            let server = ServerBuilder::new(Box::new(move || Filesystem::new(root.clone()).unwrap()))
                .build()
                .unwrap();
            tokio::spawn(server.service(stream));
        }
    });
    // Warm up: one session first, so lazily built state is not counted.
    let warm = login(addr).await;
    const N: isize = 200;
    let before = LIVE.load(Ordering::Relaxed);
    let mut sessions = Vec::new();
    for _ in 0..N {
        sessions.push(login(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per_session = (LIVE.load(Ordering::Relaxed) - before) / N;
    // Client and server both live in this process: the client side is a socket and an 8 KiB
    // `BufReader` per session, so the server's part is what is over 8 KiB.
    let server_part = per_session - 8192;
    assert!(server_part < 20 * 1024, "an idle session costs the server about {server_part} bytes of heap");
    drop((warm, sessions));
}

/// Serves `root` on a loopback port, one `Server` per connection as `service` requires, all
/// sharing `permits`; listings stall out after 1 s.
async fn serve_listings(root: std::path::PathBuf, permits: Option<Arc<Semaphore>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let root = root.clone();
            let server = ServerBuilder::new(Box::new(move || Filesystem::new(root.clone()).unwrap()))
                .data_stall_timeout(Duration::from_secs(1))
                .listing_permits(permits.clone())
                .build()
                .unwrap();
            tokio::spawn(server.service(stream));
        }
    });
    addr
}

async fn reply(c: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_line(&mut line))
        .await
        .expect("a reply in time")
        .unwrap();
    line
}

/// A session that asked for `LIST big` on a data connection it does not read (4 KiB receive
/// buffer, so the server's writes stall), and got `150`.
async fn stalled_list(addr: std::net::SocketAddr) -> (BufReader<TcpStream>, TcpStream) {
    let mut c = login(addr).await;
    c.get_mut().write_all(b"EPSV\r\n").await.unwrap();
    let line = reply(&mut c).await;
    let port: u16 = line[line.find("|||").expect("229") + 3..].split('|').next().unwrap().parse().unwrap();
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    let data = s.connect((addr.ip(), port).into()).await.unwrap();
    c.get_mut().write_all(b"LIST big\r\n").await.unwrap();
    assert!(reply(&mut c).await.starts_with("150"));
    (c, data)
}

/// The heap the process grows by at most while `n` sessions each ask for a stalled listing at
/// once, until every one has been answered (`426`, the stall limit).
async fn peak_of_stalled_listings(addr: std::net::SocketAddr, n: usize) -> isize {
    let base = reset_peak();
    let mut sessions = Vec::new();
    for _ in 0..n {
        sessions.push(stalled_list(addr).await);
    }
    for (c, _data) in &mut sessions {
        let line = reply(c).await;
        assert!(line.starts_with("426"), "{line}");
    }
    drop(sessions);
    PEAK.load(Ordering::Relaxed) - base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_listings_in_memory_at_once_are_bounded_by_the_listing_permits() {
    let _serial = SERIAL.lock().await;
    // 20,000 names of 200 characters: a LIST of about 5 MB, more than loopback buffers hold.
    let root = std::env::temp_dir().join(format!("unftp-memory-listings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let big = root.join("big");
    std::fs::create_dir_all(&big).unwrap();
    let pad = "x".repeat(190);
    for i in 0..20_000 {
        std::fs::File::create(big.join(format!("{pad}{i:010}"))).unwrap();
    }
    const N: usize = 8;
    let unlimited = serve_listings(root.clone(), None).await;
    let one = peak_of_stalled_listings(unlimited, 1).await;
    let all_unlimited = peak_of_stalled_listings(unlimited, N).await;
    let limited = serve_listings(root.clone(), Some(Arc::new(Semaphore::new(2)))).await;
    let all_limited = peak_of_stalled_listings(limited, N).await;
    let _ = std::fs::remove_dir_all(&root);
    let mb = |b: isize| b as f64 / 1e6;
    eprintln!(
        "heap peak: one stalled LIST {:.1} MB; {N} at once {:.1} MB without a limit, {:.1} MB with 2 listing permits",
        mb(one),
        mb(all_unlimited),
        mb(all_limited)
    );
    assert!(
        all_limited < 3 * one,
        "{N} stalled listings with 2 permits grew the heap by {:.1} MB (one: {:.1} MB)",
        mb(all_limited),
        mb(one)
    );
}

mod streamed {
    //! A back-end that produces a listing of a million synthetic entries as a stream, without
    //! ever holding them (libunftp patch 41, `StorageBackend::list_stream`).

    use std::fmt::Debug;
    use std::path::{Path, PathBuf};
    use std::time::SystemTime;

    use async_trait::async_trait;
    use unftp_core::auth::DefaultUser;
    use unftp_core::storage::{Error, ErrorKind, Fileinfo, ListStream, Metadata, Result, StorageBackend};

    pub const ENTRIES: usize = 1_000_000;

    #[derive(Debug)]
    pub struct Meta;

    impl Metadata for Meta {
        fn len(&self) -> u64 {
            4096
        }
        fn is_dir(&self) -> bool {
            false
        }
        fn is_file(&self) -> bool {
            true
        }
        fn is_symlink(&self) -> bool {
            false
        }
        fn modified(&self) -> Result<SystemTime> {
            Ok(SystemTime::UNIX_EPOCH)
        }
        fn gid(&self) -> u32 {
            0
        }
        fn uid(&self) -> u32 {
            0
        }
    }

    #[derive(Debug)]
    pub struct Million;

    fn refused<T>() -> Result<T> {
        Err(Error::from(ErrorKind::PermissionDenied))
    }

    #[async_trait]
    impl StorageBackend<DefaultUser> for Million {
        type Metadata = Meta;

        async fn metadata<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, _: P) -> Result<Meta> {
            Ok(Meta)
        }
        async fn list<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, _: P) -> Result<Vec<Fileinfo<PathBuf, Meta>>> {
            panic!("the server asks for the stream, never for the whole list")
        }
        async fn list_stream<P>(&self, _: &DefaultUser, _: P) -> Result<ListStream<Meta>>
        where
            P: AsRef<Path> + Send + Debug,
        {
            let entries = (0..ENTRIES).map(|i| {
                Ok(Fileinfo {
                    path: PathBuf::from(format!("synthetic entry number {i:010}.dat")),
                    metadata: Meta,
                })
            });
            Ok(Box::pin(futures_util::stream::iter(entries)))
        }
        async fn get<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, _: P, _: u64) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
            refused()
        }
        async fn put<P: AsRef<Path> + Send + Debug, R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static>(
            &self,
            _: &DefaultUser,
            _: R,
            _: P,
            _: u64,
        ) -> Result<u64> {
            refused()
        }
        async fn del<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, _: P) -> Result<()> {
            refused()
        }
        async fn mkd<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, _: P) -> Result<()> {
            refused()
        }
        async fn rename<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, _: P, _: P) -> Result<()> {
            refused()
        }
        async fn rmd<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, _: P) -> Result<()> {
            refused()
        }
        async fn cwd<P: AsRef<Path> + Send + Debug>(&self, _: &DefaultUser, _: P) -> Result<()> {
            Ok(())
        }
    }
}

/// Reads a data connection to its end slowly (64 KiB, then a pause), counting lines.
async fn read_slowly(mut data: TcpStream, buf: &mut [u8]) -> usize {
    use tokio::io::AsyncReadExt;
    let mut lines = 0;
    let mut reads = 0u32;
    loop {
        let n = data.read(buf).await.unwrap();
        if n == 0 {
            return lines;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
        reads += 1;
        if reads % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_listing_of_a_million_entries_to_a_slow_reader_holds_a_bounded_heap() {
    let _serial = SERIAL.lock().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let server = ServerBuilder::new(Box::new(|| streamed::Million))
                .data_stall_timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            tokio::spawn(server.service(stream));
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    for (command, at_least) in [("LIST", 60), ("NLST", 40), ("MLSD", 60)] {
        let mut c = login(addr).await;
        c.get_mut().write_all(b"EPSV\r\n").await.unwrap();
        let line = reply(&mut c).await;
        let port: u16 = line[line.find("|||").expect("229") + 3..].split('|').next().unwrap().parse().unwrap();
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(16 * 1024).unwrap();
        let data = s.connect((addr.ip(), port).into()).await.unwrap();
        let base = reset_peak();
        c.get_mut().write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
        assert!(reply(&mut c).await.starts_with("150"));
        let lines = read_slowly(data, &mut buf).await;
        let line = reply(&mut c).await;
        assert!(line.starts_with("226"), "{command}: {line}");
        let peak = PEAK.load(Ordering::Relaxed) - base;
        eprintln!("{command} of {} entries: heap peak {:.1} KB", streamed::ENTRIES, peak as f64 / 1e3);
        assert_eq!(lines, streamed::ENTRIES, "{command}");
        // The listing itself is at_least bytes an entry (tens of MB); the server holds a chunk.
        assert!(
            peak < 1024 * 1024 && (peak as usize) < streamed::ENTRIES * at_least / 50,
            "{command} of a million entries grew the heap by {peak} bytes"
        );
    }
}
