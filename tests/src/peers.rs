//! Real FTP servers for the end-to-end tests, started unprivileged on loopback and killed on
//! drop: vsftpd (Debian's, anonymous read-only, `LIST` only) and pyftpdlib (anonymous read-only
//! plus named users with write rights, offers `MLSD`).
//!
//! Both need a port told in advance, so they get [`free_port`]'s, then we wait until it accepts.
//! Named vsftpd logins would need a system account with a password (PAM), which an unprivileged
//! test cannot create, so named users, netrc and uploads are tested against pyftpdlib.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{ChildGuard, free_port, require_python_module, require_tool, wait_for_ftp};

/// A running server; dropping it kills the process and removes its config.
pub struct Peer {
    /// Where it listens.
    pub addr: SocketAddr,
    _child: ChildGuard,
    _conf: tempfile::TempDir,
}

impl Peer {
    /// Spawns `cmd` (a server told to listen on 127.0.0.1:`port`) and waits for its greeting.
    fn start(cmd: Command, name: &str, port: u16, conf: tempfile::TempDir) -> Self {
        let mut child = ChildGuard::spawn(cmd, name);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_for_ftp(addr, &mut child, Duration::from_secs(10));
        Peer {
            addr,
            _child: child,
            _conf: conf,
        }
    }

    /// `127.0.0.1:PORT` as `host:port` for the three-part form.
    pub fn hostport(&self) -> String {
        self.addr.to_string()
    }

    /// `ftp://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("ftp://{}", self.addr)
    }
}

/// Starts vsftpd serving `root` read-only to anonymous users (for a test marked with the
/// `peer_vsftpd` cfg).
pub fn start_vsftpd(root: &Path) -> Peer {
    start_vsftpd_with(root, "")
}

/// Starts vsftpd as [`start_vsftpd`] does, with explicit FTPS (`AUTH TLS`) required for logins
/// and data and `require_ssl_reuse=YES` (data connections must resume the control connection's
/// TLS session), serving `cert` (for a test marked with the `peer_vsftpd` cfg). The
/// `force_local_*` options are set too, but named logins need PAM (see the module's note), so
/// the anonymous ones are what a test can exercise.
pub fn start_vsftpd_tls(root: &Path, cert: &crate::pki::ServerCert) -> Peer {
    // ssl_ciphers: vsftpd's default (DES-CBC3-SHA) is refused by modern TLS stacks.
    let tls = format!(
        "ssl_enable=YES\nrsa_cert_file={cert}\nrsa_private_key_file={key}\n\
         allow_anon_ssl=YES\nforce_anon_logins_ssl=YES\nforce_anon_data_ssl=YES\n\
         force_local_logins_ssl=YES\nforce_local_data_ssl=YES\nrequire_ssl_reuse=YES\n\
         ssl_ciphers=HIGH\n",
        cert = cert.cert.display(),
        key = cert.key.display(),
    );
    start_vsftpd_with(root, &tls)
}

fn start_vsftpd_with(root: &Path, extra: &str) -> Peer {
    let bin = require_tool("vsftpd");
    let conf = tempfile::tempdir().expect("vsftpd conf dir");
    let empty = conf.path().join("empty");
    std::fs::create_dir(&empty).expect("secure_chroot_dir");
    let port = free_port();
    // run_as_launching_user + seccomp_sandbox=NO is what lets vsftpd run without root; it then
    // does no chroot and no privilege separation, fine for a loopback test server.
    // force_dot_files: vsftpd's LIST hides dotfiles by default, and the fixtures have one.
    let text = format!(
        "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
         background=NO\nrun_as_launching_user=YES\nseccomp_sandbox=NO\n\
         anonymous_enable=YES\nanon_root={root}\nno_anon_password=YES\n\
         anon_world_readable_only=NO\nlocal_enable=NO\nwrite_enable=NO\n\
         secure_chroot_dir={empty}\ncheck_shell=NO\nxferlog_enable=NO\n\
         pasv_enable=YES\nuse_localtime=NO\nforce_dot_files=YES\n{extra}",
        root = root.display(),
        empty = empty.display(),
    );
    let path = conf.path().join("vsftpd.conf");
    std::fs::write(&path, text).expect("write vsftpd.conf");
    let mut cmd = Command::new(bin);
    cmd.arg(&path);
    Peer::start(cmd, "vsftpd", port, conf)
}

/// The pyftpdlib server: anonymous read-only on `root`, plus each `(user, password)` with full
/// rights on `root`.
const PYFTPD: &str = r#"
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
logging.basicConfig(level=logging.WARNING)
port, root = int(sys.argv[1]), sys.argv[2]
auth = DummyAuthorizer()
auth.add_anonymous(root)
for spec in sys.argv[3:]:
    user, password = spec.split(":", 1)
    auth.add_user(user, password, root, perm="elradfmwMT")
handler = FTPHandler
handler.authorizer = auth
server = FTPServer(("127.0.0.1", port), handler)
server.serve_forever()
"#;

/// Starts pyftpdlib on `root` with `users` (for a test marked with the `peer_pyftpdlib` cfg).
pub fn start_pyftpdlib(root: &Path, users: &[(&str, &str)]) -> Peer {
    require_python_module("pyftpdlib");
    let conf = tempfile::tempdir().expect("pyftpdlib script dir");
    let script = conf.path().join("serve.py");
    std::fs::write(&script, PYFTPD).expect("write serve.py");
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(port.to_string()).arg(root);
    for (u, p) in users {
        cmd.arg(format!("{u}:{p}"));
    }
    Peer::start(cmd, "pyftpdlib", port, conf)
}
