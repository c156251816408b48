//! Japanese labels for the API's enums: the API carries values, what a person reads is the
//! client's business.

use kizuna_proto::admin::MemberRole;
use kizuna_proto::audit::AuditAction;
use kizuna_proto::care_requests::AnswerState;
use kizuna_proto::common::{AccountKind, FacilityKind};
use kizuna_server::api::convert;

/// An enum value as received: unknown numbers (a newer server) read as unspecified.
fn known<E: TryFrom<i32> + Default>(value: i32) -> E {
    E::try_from(value).unwrap_or_default()
}

/// The domain's own label (one table of Japanese profession names, in the domain).
pub fn profession(value: i32) -> &'static str {
    convert::profession_from(value).map_or("", |p| p.label())
}

/// Who wrote a post: the profession of a professional, 家族 or 事務局 otherwise.
pub fn author(kind: i32, profession_value: i32) -> &'static str {
    match known(kind) {
        AccountKind::Professional => profession(profession_value),
        AccountKind::Family => "家族",
        AccountKind::Operator => "事務局",
        AccountKind::Unspecified => "",
    }
}

pub fn facility_kind(value: i32) -> &'static str {
    match known(value) {
        FacilityKind::Clinic => "診療所",
        FacilityKind::Hospital => "病院",
        FacilityKind::Pharmacy => "薬局",
        FacilityKind::DentalClinic => "歯科診療所",
        FacilityKind::VisitingNursingStation => "訪問看護ステーション",
        FacilityKind::CareOffice => "居宅介護支援事業所",
        FacilityKind::Rehabilitation => "リハビリテーション",
        FacilityKind::Municipality => "行政",
        FacilityKind::Other => "その他",
        FacilityKind::Unspecified => "",
    }
}

/// The domain's own label.
pub fn care_request_kind(value: i32) -> &'static str {
    convert::care_request_kind_from(value).map_or("", |k| k.label())
}

pub fn answer_state(value: i32) -> &'static str {
    match known(value) {
        AnswerState::Pending => "未回答",
        AnswerState::Accepted => "受諾",
        AnswerState::Declined => "辞退",
        AnswerState::Cancelled => "取消",
        AnswerState::Unspecified => "",
    }
}

/// The mark of a facility or sender of another hub: 「［gunma］」 (nothing for this hub).
pub fn hub(hub: &str) -> String {
    if hub.is_empty() { String::new() } else { format!("［{hub}］") }
}

/// Operators' words (the audit log is read by the hub's operators, as before in English).
pub fn audit_action(value: i32) -> &'static str {
    match known(value) {
        AuditAction::Read => "read",
        AuditAction::Write => "write",
        AuditAction::Unspecified => "",
    }
}

/// A member's role as `kizuna status` shows it.
pub fn member_role(value: i32) -> &'static str {
    match known(value) {
        MemberRole::Leader => "leader",
        MemberRole::Follower => "follower",
        MemberRole::Candidate => "candidate",
        MemberRole::Learner => "learner",
        MemberRole::Failed => "failed",
        MemberRole::Shutdown => "shutdown",
        MemberRole::Unspecified => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn professions_read_in_japanese_and_unknown_values_read_as_nothing() {
        use kizuna_proto::common::Profession;
        assert_eq!(profession(Profession::VisitingNurse as i32), "訪問看護師");
        assert_eq!(profession(Profession::CareManager as i32), "ケアマネジャー");
        assert_eq!(profession(Profession::Unspecified as i32), "");
        assert_eq!(profession(999), "");
    }

    #[test]
    fn another_hubs_facilities_are_marked_with_it() {
        assert_eq!(hub("gunma"), "［gunma］");
        assert_eq!(hub(""), "");
    }
}
