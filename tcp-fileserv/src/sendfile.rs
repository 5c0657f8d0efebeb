//! Sending a byte range of a file to a socket: sendfile(2) on Linux, so the bytes go from the
//! page cache to the socket without passing through user space; a buffered copy elsewhere.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// Largest count one sendfile(2) call may move (Linux caps it at 0x7ffff000).
#[cfg(target_os = "linux")]
const MAX_SENDFILE_CHUNK: u64 = 0x7fff_f000;

/// Sends bytes `offset .. offset + length` of `file` to `stream`. Fails if the socket accepts
/// nothing for `stall` (a peer that stopped reading), or if the file turns out shorter than
/// `offset + length` (it shrank since it was opened).
#[cfg(target_os = "linux")]
pub async fn send_file_range(
    stream: &TcpStream,
    file: &std::fs::File,
    mut offset: u64,
    length: u64,
    stall: Duration,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let sock = stream.as_raw_fd();
    let fd = file.as_raw_fd();
    let end = offset + length;
    while offset < end {
        let count = (end - offset).min(MAX_SENDFILE_CHUNK) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let mut off = offset as libc::off_t;
            // SAFETY: both descriptors are open for the duration of the call (we hold borrows of
            // their owners) and `off` is a valid, exclusively borrowed off_t.
            let n = unsafe { libc::sendfile(sock, fd, &mut off, count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "file ended at byte {offset}, {} bytes short: it shrank while being sent",
                        end - offset
                    ),
                ));
            }
            Ok(n) => offset += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(stall, stream.writable())
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading")
                    })??;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Portable fallback: positioned reads into a 1 MiB buffer, written with a stall timeout.
#[cfg(not(target_os = "linux"))]
pub async fn send_file_range(
    stream: &TcpStream,
    file: &std::fs::File,
    mut offset: u64,
    length: u64,
    stall: Duration,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let end = offset + length;
    let mut buf = vec![0u8; 1 << 20];
    while offset < end {
        let want = ((end - offset) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            tokio::time::timeout(stall, stream.writable())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading"))??;
            match stream.try_write(chunk) {
                Ok(w) => chunk = &chunk[w..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        offset += n as u64;
    }
    Ok(())
}
