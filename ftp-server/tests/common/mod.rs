//! A small synchronous FTP control client for the scale-out tests (PROXY protocol, HAProxy):
//! it connects from a chosen loopback source address, so that per-client limits and lockouts
//! can be told apart.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection from `src` (any of 127/8 on Linux) to `dst`.
pub fn socket_from(src: [u8; 4], dst: SocketAddr) -> TcpStream {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from((src, 0)).into())
        .unwrap_or_else(|e| panic!("bind {src:?}: {e}"));
    s.connect_timeout(&dst.into(), IO_TIMEOUT).expect("connect");
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

pub struct Ftp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Ftp {
    /// Connects from `from`, sends `header`, and reads the first reply (code 0: closed).
    pub fn open(from: [u8; 4], server: SocketAddr, header: &[u8]) -> (Self, u16) {
        let mut s = socket_from(from, server);
        s.write_all(header).expect("header");
        let w = s.try_clone().expect("clone");
        let mut f = Self {
            r: BufReader::new(s),
            w,
        };
        let code = f.reply();
        (f, code)
    }

    pub fn reply(&mut self) -> u16 {
        loop {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) | Err(_) => return 0,
                Ok(_) => {}
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
        }
    }

    pub fn cmd_text(&mut self, line: &str) -> (u16, String) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
        // Multi-line replies (RFC 959 §4.2) run from `123-` to `123 `.
        let mut text = String::new();
        let mut first: Option<String> = None;
        loop {
            let mut l = String::new();
            match self.r.read_line(&mut l) {
                Ok(0) | Err(_) => return (0, text),
                Ok(_) => {}
            }
            text.push_str(&l);
            let code = l.get(..3).unwrap_or("").to_string();
            let sep = l.as_bytes().get(3).copied();
            match &first {
                None if sep == Some(b'-') => first = Some(code),
                Some(c) if *c != code || sep != Some(b' ') => {}
                _ => return (code.parse().unwrap_or(0), text),
            }
        }
    }

    pub fn cmd(&mut self, line: &str) -> u16 {
        self.cmd_text(line).0
    }

    pub fn login(&mut self, user: &str, pass: &str) -> u16 {
        assert_eq!(self.cmd(&format!("USER {user}")), 331);
        self.cmd(&format!("PASS {pass}"))
    }

    pub fn epsv_port(&mut self) -> u16 {
        let (c, t) = self.cmd_text("EPSV");
        assert_eq!(c, 229, "{t}");
        t.split("(|||")
            .nth(1)
            .and_then(|s| s.split('|').next())
            .and_then(|p| p.parse().ok())
            .expect("EPSV port")
    }

    /// PASV (RFC 959 §4.1.2): the data address the server advertises (its `passive_host`).
    pub fn pasv_addr(&mut self) -> SocketAddr {
        let (c, t) = self.cmd_text("PASV");
        assert_eq!(c, 227, "{t}");
        let inner = &t[t.find('(').expect("(") + 1..t.find(')').expect(")")];
        let n: Vec<u16> = inner
            .split(',')
            .map(|x| x.trim().parse().expect("number"))
            .collect();
        let ip = [n[0], n[1], n[2], n[3]].map(|b| u8::try_from(b).expect("octet"));
        SocketAddr::from((ip, n[4] * 256 + n[5]))
    }

    /// STOR over PASV, the data connection from `src`: the final reply code.
    pub fn stor(&mut self, src: [u8; 4], path: &str, body: &[u8]) -> u16 {
        let mut data = socket_from(src, self.pasv_addr());
        let c = self.cmd(&format!("STOR {path}"));
        if c != 150 {
            return c;
        }
        data.write_all(body).expect("data");
        drop(data);
        self.reply()
    }

    /// RETR over PASV, the data connection from `src`: the bytes after `226`, or the code.
    pub fn retr(&mut self, src: [u8; 4], path: &str) -> Result<Vec<u8>, u16> {
        use std::io::Read;
        let mut data = socket_from(src, self.pasv_addr());
        let c = self.cmd(&format!("RETR {path}"));
        if c != 150 {
            return Err(c);
        }
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("data");
        match self.reply() {
            226 => Ok(got),
            c => Err(c),
        }
    }
}
