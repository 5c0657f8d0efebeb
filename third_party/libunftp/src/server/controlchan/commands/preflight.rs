//! Preflight checks of the transfer commands (`RETR`, `STOR`, `APPE`, `STOU`, `LIST`, `NLST`,
//! `MLSD`), made before the `150` reply (our patch 23).
//
// RFC 959 §5.4 lists 550 (and 450, 553, ...) as replies to these commands themselves, before
// any 1yz mark: a refusal known before the transfer belongs there, as vsftpd answers it.
// Sent after 150 it reads as a transfer that broke: wget retries it for minutes, curl reports
// a partial transfer. So the handlers ask the back-end (`StorageBackend::check_get`,
// `check_put`, `check_list`) first, and a refusal is the command's reply, with the code the
// data channel would have used for the same error (`Reply::from_storage_error`).
//
// The data connection is left as it is: a passive connection the client already made, or the
// active one libunftp opened at PORT, stays for the next transfer command, as vsftpd keeps its
// PASV listener after a refused RETR; a new PASV/EPSV/PORT/EPRT releases it (datachan.rs).

use crate::{
    auth::UserDetail,
    server::{
        controlchan::Reply,
        datachan::{categorize_and_register_error, listing_path},
        session::Session,
    },
    storage::{Metadata, StorageBackend},
};

/// What a transfer command is about to do.
#[derive(Debug)]
pub(crate) enum Transfer<'a> {
    /// `RETR path`.
    Get(&'a str),
    /// `STOR`/`STOU path` (`append` false) or `APPE path` (true).
    Put { path: &'a str, append: bool },
    /// `LIST`/`NLST`/`MLSD [path]`.
    List(Option<&'a str>),
}

/// Asks the back-end whether it would refuse `transfer`; returns the reply to send instead of
/// `150`, or `None` to go on. `command` names it in logs and metrics (`"retr"`, ...).
///
/// A refused command also consumes a preceding `REST`, as vsftpd does (RFC 959 §4.1.3: REST is
/// followed by the transfer command it applies to).
pub(crate) async fn refusal<Storage, User>(session: &mut Session<Storage, User>, logger: &slog::Logger, command: &'static str, transfer: Transfer<'_>) -> Option<Reply>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    // The control loop lets only logged-in users reach these commands.
    let user = session.user.clone();
    let user = (*user).as_ref()?;
    let start_pos = session.start_pos;
    // The same paths the data channel computes for the transfer itself.
    let result = match transfer {
        Transfer::Get(path) => session.storage.check_get(user, session.cwd.join(path), start_pos).await,
        Transfer::Put { path, append } => session.storage.check_put(user, session.cwd.join(path), start_pos, append).await,
        Transfer::List(path) => session.storage.check_list(user, listing_path(&session.cwd, path)).await,
    };
    let err = result.err()?;
    slog::info!(logger, "{} refused before the transfer: {:?}", command.to_uppercase(), err; "start_pos" => start_pos);
    categorize_and_register_error(logger, &err, command);
    session.start_pos = 0;
    Some(Reply::from_storage_error(err.kind()))
}
