//! `kizuna emergency-access ROOM --reason …` (a designated account opens a patient's timeline
//! for four hours), `kizuna admin break-glass --account N [--off]` and `kizuna admin
//! emergency-accesses` (operators: who may, and every access with its reason).

use kizuna_proto::rooms::room_service_client::RoomServiceClient;
use kizuna_proto::rooms::{ListEmergencyAccessesRequest, OpenEmergencyAccessRequest, SetBreakGlassRequest};

use super::Target;
use super::user::{authed, channel, idempotency_key, token};

/// Opens an emergency access to a patient's timeline, stating why.
pub async fn open(target: &Target, room: u64, reason: String) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = RoomServiceClient::new(channel(target).await?);
    let req = OpenEmergencyAccessRequest { idempotency_key: idempotency_key(), room_id: room, reason };
    let opened = c.open_emergency_access(authed(req, &t)?).await?.into_inner();
    let hours = opened.until.map_or(0, |u| (u.seconds - now_s()).max(0) / 3600);
    println!(
        "緊急アクセスを開始しました (約 {hours} 時間): `kizuna timeline {room}` で読めます。すべての閲覧は監査ログに残ります"
    );
    Ok(())
}

/// Designates `account` for emergency access, or no longer.
pub async fn designate(target: &Target, account: u64, allowed: bool) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = RoomServiceClient::new(channel(target).await?);
    let req = SetBreakGlassRequest { idempotency_key: idempotency_key(), account_id: account, allowed };
    c.set_break_glass(authed(req, &t)?).await?;
    let what = if allowed {
        "に緊急アクセス権を設定しました"
    } else {
        "の緊急アクセス権を外しました"
    };
    println!("アカウント {account} {what}");
    Ok(())
}

/// Every emergency access (operators), newest first, with its reason.
pub async fn list(target: &Target) -> anyhow::Result<()> {
    let t = token()?;
    let mut c = RoomServiceClient::new(channel(target).await?);
    let list = c.list_emergency_accesses(authed(ListEmergencyAccessesRequest {}, &t)?).await?.into_inner();
    if list.accesses.is_empty() {
        println!("緊急アクセスはありません");
    }
    for a in list.accesses {
        let open = a.until.is_some_and(|u| u.seconds > now_s());
        println!(
            "account {:<5} room {:<5} patient {:<5} {} {}",
            a.account_id,
            a.room_id,
            a.patient_id,
            if open { "有効  " } else { "終了  " },
            a.reason
        );
    }
    Ok(())
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
