//! The RFC 959 Abort (`ABOR`) command
//
// This command tells the server to abort the previous FTP
// service command and any associated transfer of data. The
// abort command may require "special action", as discussed in
// the Section on FTP Commands, to force recognition by the
// server.  No action is to be taken if the previous command
// has been completed (including data transfer).  The control
// connection is not to be closed by the server, but the data
// connection must be closed.

use crate::server::controlchan::{
    Reply, ReplyCode,
    error::ControlChanError,
    handler::{CommandContext, CommandHandler},
};
use async_trait::async_trait;
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Metadata, StorageBackend};

#[derive(Debug)]
pub struct Abor;

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Abor
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let (tx, task_running, passive) = {
            let mut session = args.session.lock().await;
            // The data task takes `data_abort_rx` when it starts: while the session still holds
            // it, no transfer (nor even a data connection) exists to abort.
            let running = session.data_abort_rx.is_none();
            (session.data_abort_tx.take(), running, session.passive_listener.clone())
        };
        if !task_running {
            // A passive port waiting for its connection is closed too (RFC 959 §4.1.3: ABOR
            // closes the data connection).
            passive.clear().await;
            return Ok(Reply::new(ReplyCode::ClosingDataConnection, "ABOR successful, no transfer was running"));
        }
        match tx {
            // The data task answers (426 then 226 when it stopped a transfer, else 226), so that
            // the replies come in the order RFC 959 §4.1.3 gives.
            Some(tx) if tx.send(()).await.is_ok() => Ok(Reply::none()),
            _ => Ok(Reply::new(ReplyCode::ClosingDataConnection, "ABOR successful, no transfer was running")),
        }
    }
}
