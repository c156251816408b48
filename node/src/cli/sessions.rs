//! `kizuna sessions` and `kizuna revoke`: the device list and the remote stop of one device.

use kizuna_proto::collab::accounts_client::AccountsClient;
use kizuna_proto::collab::{ListSessionsRequest, RevokeSessionRequest};

use super::Target;
use super::collab::{authed, channel, request_id, time, token};

/// Lists the sessions of your account (or, for admins, of `account`).
pub async fn list(target: &Target, account: Option<u64>) -> anyhow::Result<()> {
    let t = token()?;
    let req = ListSessionsRequest { account_id: account.unwrap_or(0) };
    let sessions = AccountsClient::new(channel(target).await?).list_sessions(authed(req, &t)?).await?.into_inner();
    for s in sessions.sessions {
        let state = if s.revoked {
            "終了"
        } else if s.current {
            "この端末"
        } else {
            "有効"
        };
        println!("{}  {:<20} since {}  {state}", s.session_id, s.device, time(&s.created_at));
    }
    Ok(())
}

/// Ends one session at once, on every node.
pub async fn revoke(target: &Target, session_id: String, account: Option<u64>) -> anyhow::Result<()> {
    let t = token()?;
    let req = RevokeSessionRequest { request_id: request_id(), account_id: account.unwrap_or(0), session_id };
    AccountsClient::new(channel(target).await?).revoke_session(authed(req, &t)?).await?;
    println!("session ended");
    Ok(())
}
