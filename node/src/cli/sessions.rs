//! `kizuna sessions` and `kizuna revoke`: the device list and the remote stop of one device;
//! `kizuna admin session-policy`: the hub's idle timeout and absolute session lifetime;
//! `kizuna admin second-factor`: who must have a second factor;
//! `kizuna admin password-policy` and `kizuna admin issue-password`: the rule for new passwords
//! and a password handed over.

use kizuna_proto::accounts::account_service_client::AccountServiceClient;
use kizuna_proto::accounts::{
    GetPasswordPolicyRequest, GetSecondFactorPolicyRequest, GetSessionPolicyRequest, IssuePasswordRequest,
    ListSessionsRequest, RevokeSessionRequest, SessionPolicy, SetPasswordPolicyRequest, SetSecondFactorPolicyRequest,
    SetSessionPolicyRequest,
};

use super::Target;
use super::user::{authed, channel, idempotency_key, time, token};

/// Lists the sessions of your account (or, for admins, of `account`).
pub async fn list(target: &Target, account: Option<u64>) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = AccountServiceClient::new(channel(target).await?);
    let mut page_token = String::new();
    loop {
        let req = ListSessionsRequest { account_id: account, page_size: 200, page_token };
        let page = c.list_sessions(authed(req, &t)?).await?.into_inner();
        page.sessions.iter().for_each(print_session);
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

fn print_session(s: &kizuna_proto::accounts::Session) {
    {
        let state = if s.revoked {
            "終了"
        } else if s.current {
            "この端末"
        } else {
            "有効"
        };
        println!("{}  {:<20} since {}  {state}", s.session_id, s.device, time(&s.created_at));
    }
}

/// Ends one session at once, on every node.
pub async fn revoke(target: &Target, session_id: String, account: Option<u64>) -> anyhow::Result<()> {
    let t = token()?;
    let req = RevokeSessionRequest { idempotency_key: idempotency_key(), account_id: account, session_id };
    AccountServiceClient::new(channel(target).await?).revoke_session(authed(req, &t)?).await?;
    println!("session ended");
    Ok(())
}

/// Shows the hub's session policy, or sets it when both values are given (operators).
pub async fn policy(target: &Target, set: Option<(u32, u32)>) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = AccountServiceClient::new(channel(target).await?);
    let policy = match set {
        Some((idle_minutes, absolute_hours)) => {
            let policy = Some(SessionPolicy { idle_minutes, absolute_hours });
            let req = SetSessionPolicyRequest { idempotency_key: idempotency_key(), policy };
            c.set_session_policy(authed(req, &t)?).await?.into_inner().policy
        }
        None => c.get_session_policy(authed(GetSessionPolicyRequest {}, &t)?).await?.into_inner().policy,
    };
    let SessionPolicy { idle_minutes, absolute_hours } = policy.unwrap_or_default();
    println!("無操作タイムアウト {idle_minutes} 分 / 最長 {absolute_hours} 時間");
    Ok(())
}

/// What `kizuna admin second-factor` changes: require it with a grace period, or no longer.
pub enum SecondFactorChange {
    Require { grace_days: u32 },
    Lift,
}

/// Shows who must have a second factor, after changing it (hub-wide, or for `facility`) if asked.
pub async fn second_factor_policy(
    target: &Target,
    facility: Option<u64>,
    change: Option<SecondFactorChange>,
) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = AccountServiceClient::new(channel(target).await?);
    if let Some(change) = change {
        let (required, grace_days) = match change {
            SecondFactorChange::Require { grace_days } => (true, grace_days),
            SecondFactorChange::Lift => (false, 0),
        };
        let req = SetSecondFactorPolicyRequest {
            idempotency_key: idempotency_key(),
            facility_id: facility,
            required,
            grace_days,
        };
        c.set_second_factor_policy(authed(req, &t)?).await?;
    }
    let policy = c.get_second_factor_policy(authed(GetSecondFactorPolicyRequest {}, &t)?).await?.into_inner();
    if policy.requirements.is_empty() {
        println!("二要素認証は必須ではありません");
    }
    for r in policy.requirements {
        let who = r.facility_id.map_or_else(|| "ハブ全体".to_owned(), |f| format!("施設 {f} の職員"));
        println!("{who}: 二要素認証が必須 ({})", due_in(r.due.map_or(0, |d| d.seconds)));
    }
    Ok(())
}

/// Shows the hub's password rule, after changing what is given.
pub async fn password_policy(target: &Target, min_chars: Option<u32>, min_kinds: Option<u32>) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = AccountServiceClient::new(channel(target).await?);
    let current = c.get_password_policy(authed(GetPasswordPolicyRequest {}, &t)?).await?.into_inner();
    if min_chars.is_some() || min_kinds.is_some() {
        let req = SetPasswordPolicyRequest {
            idempotency_key: idempotency_key(),
            min_chars: min_chars.unwrap_or(current.min_chars),
            min_kinds: min_kinds.unwrap_or(current.min_kinds),
        };
        c.set_password_policy(authed(req, &t)?).await?;
    }
    let policy = c.get_password_policy(authed(GetPasswordPolicyRequest {}, &t)?).await?.into_inner();
    println!(
        "新しいパスワード: {}文字以上、英小文字・英大文字・数字・記号などのうち{}種類以上",
        policy.min_chars, policy.min_kinds
    );
    Ok(())
}

/// Issues a random password for `account` and prints it once, to hand over.
pub async fn issue_password(target: &Target, account: u64) -> anyhow::Result<()> {
    let t = token()?;
    let password = crate::api::one_time_password()?;
    let req =
        IssuePasswordRequest { idempotency_key: idempotency_key(), account_id: account, password: password.clone() };
    AccountServiceClient::new(channel(target).await?).issue_password(authed(req, &t)?).await?;
    println!("account {account}: password issued: {password}");
    println!("(shown once; its holder must change it at the next sign-in, and its other sessions ended)");
    Ok(())
}

/// How long until `due_s` (seconds since the epoch), as an operator reads it.
fn due_in(due_s: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    match due_s - now {
        left if left <= 0 => "期限を過ぎています: 未設定のアカウントはログインできません".to_owned(),
        left => format!("期限まであと {} 日 {} 時間", left / 86_400, left % 86_400 / 3600),
    }
}
