//! The signal servers stop on: Ctrl-C (SIGINT) or SIGTERM (what `kill` and systemd send).

/// Completes on the first Ctrl-C or SIGTERM. When SIGTERM cannot be watched (an unusual
/// sandbox), that is logged and Ctrl-C still works.
pub async fn signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C still works");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutdown asked for");
}
