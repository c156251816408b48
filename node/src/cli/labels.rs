//! Japanese labels for the API's enums: the API carries values, what a person reads is the
//! client's business.

use kizuna_proto::admin::MemberRole;
use kizuna_proto::audit::AuditAction;
use kizuna_proto::care_requests::{AnswerState, CareRequestKind};
use kizuna_proto::common::{AccountKind, FacilityKind, Profession};

/// An enum value as received: unknown numbers (a newer server) read as unspecified.
fn known<E: TryFrom<i32> + Default>(value: i32) -> E {
    E::try_from(value).unwrap_or_default()
}

pub fn profession(value: i32) -> &'static str {
    match known(value) {
        Profession::Doctor => "医師",
        Profession::Nurse => "看護師",
        Profession::VisitingNurse => "訪問看護師",
        Profession::Pharmacist => "薬剤師",
        Profession::Dentist => "歯科医師",
        Profession::DentalHygienist => "歯科衛生士",
        Profession::Therapist => "PT/OT/ST",
        Profession::CareManager => "ケアマネジャー",
        Profession::CareWorker => "介護職",
        Profession::MedicalSocialWorker => "MSW",
        Profession::Clerk => "事務",
        Profession::MunicipalStaff => "行政職員",
        Profession::Other => "その他",
        Profession::Unspecified => "",
    }
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

pub fn care_request_kind(value: i32) -> &'static str {
    match known(value) {
        CareRequestKind::Admission => "入院",
        CareRequestKind::Discharge => "退院",
        CareRequestKind::HomeVisit => "往診",
        CareRequestKind::Collaboration => "連携",
        CareRequestKind::Unspecified => "",
    }
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
    fn every_profession_has_the_domain_label() {
        use kizuna_domain::collab::model::Profession as P;
        let pairs = [
            (Profession::Doctor, P::Doctor),
            (Profession::Nurse, P::Nurse),
            (Profession::VisitingNurse, P::VisitingNurse),
            (Profession::Pharmacist, P::Pharmacist),
            (Profession::Dentist, P::Dentist),
            (Profession::DentalHygienist, P::DentalHygienist),
            (Profession::Therapist, P::Therapist),
            (Profession::CareManager, P::CareManager),
            (Profession::CareWorker, P::CareWorker),
            (Profession::MedicalSocialWorker, P::MedicalSocialWorker),
            (Profession::Clerk, P::Clerk),
            (Profession::MunicipalStaff, P::MunicipalStaff),
            (Profession::Other, P::Other),
        ];
        for (api, domain) in pairs {
            assert_eq!(profession(api as i32), domain.label(), "{api:?}");
        }
        assert_eq!(profession(999), "");
    }
}
