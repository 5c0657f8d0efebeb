//! The heap an idle control connection costs, counted by a global allocator (this test binary
//! holds only this test, so nothing else allocates meanwhile). A regression test for the small
//! control-loop buffers (PATCHES.md, patch 15): `Framed` reserved 16 KiB per session up front
//! (measured here: 28.9 KB per session before, 13.6 KB after).

#![allow(missing_docs)]
// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use libunftp::ServerBuilder;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use unftp_sbe_fs::Filesystem;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
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
